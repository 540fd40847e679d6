"""The one experiment runner (nas.experiment): the results file every benchmark writes
(rows laid over the file as it is on disk, an unreadable file loses no row), and the run loop
(finished units skipped, one row per unit with its wall time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas.experiment import Experiment, Results, Unit


def test_run_skips_finished_units_and_writes_a_row_per_unit(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []

    def unit(key: str) -> Unit:
        def run() -> dict[str, int]:
            calls.append(key)
            return {"value": len(calls)}
        return Unit(key, run)

    exp = Experiment("b", tmp_path, {"epochs": 1}, work=tmp_path / "work", env={"device": "cpu"})
    assert exp.run([unit("a/s0"), unit("b/s0")], brief=lambda r: f"v={r['value']}") == 2
    again = Experiment("b", tmp_path, {"epochs": 1}, work=tmp_path / "work")
    assert again.run([unit("a/s0"), unit("b/s0"), unit("c/s0")]) == 1
    assert calls == ["a/s0", "b/s0", "c/s0"]
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["benchmark"] == "b" and data["settings"] == {"epochs": 1}
    assert data["env"] == {"device": "cpu"}  # the first run's record, kept by a later run
    row = data["rows"]["b/s0"]
    assert row["key"] == "b/s0" and row["value"] == 2 and row["unit_wall_s"] >= 0
    assert row["torch_threads"] >= 1 and "finished" in row
    out = capsys.readouterr().out
    assert "b/s0: v=2" in out and "a/s0: done earlier, skipped" in out


def test_a_file_of_another_protocol_is_refused_naming_the_setting(tmp_path: Path) -> None:
    Experiment("b", tmp_path, {"epochs": 1}, work=tmp_path, must_match=("epochs",)).run(
        [Unit("a", lambda: {})])
    with pytest.raises(SystemExit, match="epochs=1, this run asks 2"):
        Experiment("b", tmp_path, {"epochs": 2}, work=tmp_path, must_match=("epochs",))


def test_a_file_of_another_layout_or_benchmark_is_refused_naming_it(tmp_path: Path) -> None:
    old = tmp_path / "b.json"  # the layout before the runner: rows as a list
    old.write_text(json.dumps({"benchmark": "b", "rows": [{"key": "a"}]}))
    with pytest.raises(SystemExit, match=r"b\.json: not a results file of this layout"):
        Experiment("b", tmp_path, {}, work=tmp_path)
    old.write_text(json.dumps({"benchmark": "other", "rows": {}}))
    with pytest.raises(SystemExit, match="holds benchmark 'other', not 'b'"):
        Experiment("b", tmp_path, {}, work=tmp_path)
    assert json.loads(old.read_text())["benchmark"] == "other"  # nothing overwritten


def test_results_keep_rows_another_process_wrote_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    first = Results(path, {"base_epochs": 24}, benchmark="b", must_match=("base_epochs",))
    second = Results(path, {"base_epochs": 24}, benchmark="b", must_match=("base_epochs",))  # started before first wrote anything
    first.put("uniform/s0/x0.5", {"test_acc_tta": 0.9})
    second.put("uniform/s1/x0.5", {"test_acc_tta": 0.8})
    assert set(json.loads(path.read_text())["rows"]) == {"uniform/s0/x0.5", "uniform/s1/x0.5"}
    # a row mended on disk is not overwritten by a process's older in-memory copy
    data = json.loads(path.read_text())
    data["rows"]["uniform/s0/x0.5"]["torch_threads"] = 1
    path.write_text(json.dumps(data))
    first.put("scratch_e/s0/x0.5", {"test_acc_tta": 0.85})
    rows = json.loads(path.read_text())["rows"]
    assert rows["uniform/s0/x0.5"]["torch_threads"] == 1
    assert len(rows) == 3


def test_results_leave_a_row_deleted_on_disk_deleted(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    res = Results(path, {"base_epochs": 24}, benchmark="b", must_match=("base_epochs",))
    res.put("uniform/s0/x0.5", {"test_acc_tta": 0.9})
    other = Results(path, {"base_epochs": 24}, benchmark="b", must_match=("base_epochs",))
    other.put("uniform/s1/x0.5", {"test_acc_tta": 0.8})
    data = json.loads(path.read_text())
    del data["rows"]["uniform/s1/x0.5"]  # deleted by hand to force a rerun
    path.write_text(json.dumps(data))
    res.put("scratch_e/s0/x0.5", {"test_acc_tta": 0.85})
    assert set(json.loads(path.read_text())["rows"]) == {"uniform/s0/x0.5", "scratch_e/s0/x0.5"}


def test_an_unreadable_results_file_loses_no_finished_unit(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.json"
    res = Results(path, {"base_epochs": 24}, benchmark="b", must_match=("base_epochs",))
    res.put("uniform/s0/x0.5", {"test_acc_tta": 0.9})
    path.write_text('{"rows": {')  # a hand edit broke it while the unit ran
    res.put("scratch_b/s0/x0.5", {"test_acc_tta": 0.91})
    side = tmp_path / "r.scratch_b_s0_x0.5.json"
    assert json.loads(side.read_text())["rows"]["scratch_b/s0/x0.5"]["test_acc_tta"] == 0.91
    assert "row scratch_b/s0/x0.5 written to" in capsys.readouterr().err
    assert path.read_text() == '{"rows": {'  # the broken file is left for the user to mend
    with pytest.raises(SystemExit, match="cannot read the results file"):
        Results(path, {"base_epochs": 24}, benchmark="b", must_match=("base_epochs",))
