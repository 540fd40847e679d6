"""benchmarks.gpu_check --smoke runs every stage on the CPU, so the GPU script cannot rot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("ENTROPIC_NAS_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))

pytestmark = [pytest.mark.slow, pytest.mark.realdata,
              pytest.mark.skipif(not (SHARED / "cifar10-jpeg.tar.gz").is_file(),
                                 reason=f"no {SHARED / 'cifar10-jpeg.tar.gz'}")]


def test_smoke_runs_every_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import gpu_check

    out = tmp_path / "gpu_check_smoke.json"
    assert gpu_check.main(["--smoke", "--data-root", str(SHARED), "--out", str(out)]) == 0
    rows = list(json.loads(out.read_text())["rows"].values())
    assert [r["stage"] for r in rows] == ["base_train", "sparsify_airbench", "sparsify_vgg16",
                                          "search_2"]
    assert all(r["seconds"] > 0 for r in rows)
    assert rows[-1]["trials"]["COMPLETE"] == 2
    assert 0 < rows[1]["macs_ratio"] <= 1
    assert "| stage | device | torch | seconds |" in capsys.readouterr().out
