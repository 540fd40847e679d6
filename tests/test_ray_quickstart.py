"""What a user runs by default on Ray: the quickstart config's NSGA-II sampler (Ray Tune
pickles the search algorithm; Optuna 5's NSGA-II sampler holds a thread lock) and a relative
``--out`` given from another working directory (every worker must see the same absolute
run directory), W&B on (offline) as shipped: no worker prints a traceback on its way out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_on_ray_with_a_relative_out_from_elsewhere(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "RAY_USAGE_STATS_ENABLED": "0",
           "ENTROPIC_NAS_RAY_VERBOSE": "0"}
    cmd = [sys.executable, "-m", "nas.cli", "search", "--config",
           str(ROOT / "configs" / "quickstart.yaml"), "--backend", "ray", "--trials", "2",
           "--out", "rel_run", "--set", "train.epochs=1", "--set",
           "finetune.epochs=1", "--set", "scratch.enabled=false", "--set",
           "search.uniform_baseline=false"]  # the sampler, the paths and W&B are what it checks
    proc = subprocess.run(cmd, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "rel_run" / "summary.json").read_text())
    assert summary["trials"]["COMPLETE"] == 2
    config = (tmp_path / "rel_run" / "config.yaml").read_text()
    assert "sampler: nsga2" in config
    assert "╭" not in proc.stdout + proc.stderr  # Tune's status tables are off by default
    # W&B's exit hook in a finished Ray worker once printed a ConnectionResetError traceback
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(list((tmp_path / "rel_run" / "wandb").glob("offline-run-*trial-*"))) == 2
