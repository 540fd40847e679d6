"""benchmarks.train_speed --quick trains the fast family under a setting and projects the
base's wall time from the steady epochs (real data, tiny subsets)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("ENTROPIC_NAS_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))

pytestmark = [pytest.mark.slow, pytest.mark.realdata,
              pytest.mark.skipif(not (SHARED / "cifar10-jpeg.tar.gz").is_file(),
                                 reason=f"no {SHARED / 'cifar10-jpeg.tar.gz'}")]


def test_quick_run_times_each_setting_and_projects_the_base(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import train_speed

    out = tmp_path / "train_speed.json"
    assert train_speed.main(["--quick", "--only", "bf16_t1", "--epochs", "2",
                             "--data-root", str(SHARED), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["complete"]
    rows = {r["setting"]: r for r in data["rows"]}
    assert set(rows) == {"bf16_t1"}
    assert rows["bf16_t1"]["threads"] == 1 and rows["bf16_t1"]["channels_last"] is True
    for r in rows.values():
        assert len(r["epoch_seconds"]) == 2
        assert r["seconds_per_epoch"] == pytest.approx(r["epoch_seconds"][1])  # steady epoch
        want = (r["outside_epochs_s"] + r["epoch_seconds"][0] + 23 * r["epoch_seconds"][1] + r["test_tta_s"]) / 60
        assert r["projected_base_min"] == pytest.approx(want)
        assert 0.0 <= r["test_acc_tta"] <= 1.0
    assert "24-epoch base (min)" in capsys.readouterr().out


def test_one_epoch_is_refused_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import train_speed

    with pytest.raises(SystemExit) as e:
        train_speed.main(["--epochs", "1"])
    assert e.value.code == 2
    assert "--epochs: must be >= 2" in capsys.readouterr().err
