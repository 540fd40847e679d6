"""``python -m benchmarks.report``: re-render docs/results.md from benchmarks/results/*.json."""

import sys

from benchmarks.report import main

sys.exit(main())
