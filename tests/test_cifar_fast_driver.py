"""The fast-family head-to-head's driver: unit plan, which widths each arm takes, and the
carry-over of a committed partial checkpoint (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import cifar_fast
from benchmarks.cifar_fast import plan


def test_plan_runs_bases_and_fine_tuned_arms_before_the_long_retrains() -> None:
    units = plan([0, 1], [0.5], None)
    kinds = [k for k, _, _ in units]
    assert units[0] == ("base", 0, None)
    assert kinds.index("uniform") > max(i for i, k in enumerate(kinds) if k == "entropic_budget")
    assert {k for k in kinds} == set(cifar_fast.KINDS)
    only = plan([0], [0.5, 0.33], {"uniform", "scratch_b"})
    assert only == [("uniform", 0, 0.5), ("scratch_b", 0, 0.5),
                    ("uniform", 0, 0.33), ("scratch_b", 0, 0.33)]


def test_torch_pruning_targets_the_bisected_arm_else_the_budget_arm(tmp_path: Path) -> None:
    """Seed 0 pruned Torch-Pruning to the bisected arm's MACs; a later seed that skips that
    superseded arm targets the budget arm's MACs, and a missing target stops with a message."""
    res = cifar_fast.Results(tmp_path / "r.json", {"base_epochs": 24})
    bench = cifar_fast.Bench({}, res, tmp_path, tmp_path)
    with pytest.raises(SystemExit, match="s1 x0.5.*target"):
        bench.tp_target(1, 0.5)
    res.put(cifar_fast.key_of("entropic_budget_lowlr", 1, 0.5), {"macs": 10})
    assert bench.tp_target(1, 0.5) == ("entropic_budget_lowlr", res.get("entropic_budget_lowlr/s1/x0.5"))
    res.put(cifar_fast.key_of("entropic", 1, 0.5), {"macs": 11})
    assert bench.tp_target(1, 0.5)[0] == "entropic"


def test_scratch_retrains_take_the_budget_arms_widths_at_either_fine_tune_lr(tmp_path: Path) -> None:
    """A seed that ran only the lowered-lr budget arm (seed 1) still has an architecture for
    Scratch-E / Scratch-B: the same pruned net's widths; the recipe-lr arm comes first."""
    res = cifar_fast.Results(tmp_path / "r.json", {"base_epochs": 2})
    bench = cifar_fast.Bench({"base_epochs": 2, "scratch_cap": 3.0}, res, tmp_path, tmp_path)
    full = dict(cifar_fast.search_spaces.default_spec(cifar_fast.FAMILY).widths)
    narrow = {k: max(1, v // 4) for k, v in full.items()}
    with pytest.raises(SystemExit, match="entropic s1 x0.5 has not run"):
        bench.scratch_arch(1, 0.5, "scratch_b")
    res.put(cifar_fast.key_of("entropic_budget_lowlr", 1, 0.5), {"widths": narrow, "macs_ratio": 0.5})
    spec, factor, arch_from, epochs = bench.scratch_arch(1, 0.5, "scratch_b")
    assert (dict(spec.widths), factor, arch_from, epochs) == (narrow, None, "entropic_budget_lowlr", 4)
    assert bench.scratch_arch(1, 0.5, "scratch_e")[3] == 2  # Scratch-E: the base's epochs
    half = {k: max(1, v // 2) for k, v in full.items()}
    res.put(cifar_fast.key_of("entropic_budget", 1, 0.5), {"widths": half, "macs_ratio": 0.25})
    spec, _, arch_from, epochs = bench.scratch_arch(1, 0.5, "scratch_b")
    assert (dict(spec.widths), arch_from, epochs) == (half, "entropic_budget", 6)  # cap x3
    spec, factor, arch_from, _ = bench.scratch_arch(1, 0.5, "uniform")
    assert arch_from is None and factor is not None and 0.6 < factor < 0.8


def test_a_committed_partial_checkpoint_seeds_a_fresh_work_dir(tmp_path: Path) -> None:
    """A unit cut off by a session's end resumes on a fresh machine from the ``last/``
    checkpoint committed beside the bases; a work dir that has its own is left alone."""
    res = cifar_fast.Results(tmp_path / "r.json", {})
    bench = cifar_fast.Bench({}, res, tmp_path / "work", tmp_path / "results" / "ckpt")
    src = tmp_path / "results" / "cifar_fast_partial" / "scratch_b_s0_x0.33" / "last"
    src.mkdir(parents=True)
    (src / "model.json").write_text("{}")
    unit = tmp_path / "work" / "scratch_b_s0_x0.33"
    bench._seed_from_partial(unit)
    assert (unit / "last" / "model.json").read_text() == "{}"
    (unit / "last" / "model.json").write_text('{"epoch": 9}')  # the run went on here
    bench._seed_from_partial(unit)
    assert (unit / "last" / "model.json").read_text() == '{"epoch": 9}'
    bench._seed_from_partial(tmp_path / "work" / "other_unit")  # nothing committed: no-op
    assert not (tmp_path / "work" / "other_unit").exists()


def test_results_keep_rows_another_process_wrote_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    first = cifar_fast.Results(path, {"base_epochs": 24})
    second = cifar_fast.Results(path, {"base_epochs": 24})  # started before first wrote anything
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
    res = cifar_fast.Results(path, {"base_epochs": 24})
    res.put("uniform/s0/x0.5", {"test_acc_tta": 0.9})
    other = cifar_fast.Results(path, {"base_epochs": 24})
    other.put("uniform/s1/x0.5", {"test_acc_tta": 0.8})
    data = json.loads(path.read_text())
    del data["rows"]["uniform/s1/x0.5"]  # deleted by hand to force a rerun
    path.write_text(json.dumps(data))
    res.put("scratch_e/s0/x0.5", {"test_acc_tta": 0.85})
    assert set(json.loads(path.read_text())["rows"]) == {"uniform/s0/x0.5", "scratch_e/s0/x0.5"}


def test_an_unreadable_results_file_loses_no_finished_unit(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.json"
    res = cifar_fast.Results(path, {"base_epochs": 24})
    res.put("uniform/s0/x0.5", {"test_acc_tta": 0.9})
    path.write_text('{"rows": {')  # a hand edit broke it while the unit ran
    res.put("scratch_b/s0/x0.5", {"test_acc_tta": 0.91})
    side = tmp_path / "r.scratch_b_s0_x0.5.json"
    assert json.loads(side.read_text())["rows"]["scratch_b/s0/x0.5"]["test_acc_tta"] == 0.91
    assert "row scratch_b/s0/x0.5 written to" in capsys.readouterr().err
    assert path.read_text() == '{"rows": {'  # the broken file is left for the user to mend
    with pytest.raises(SystemExit, match="cannot read the results file"):
        cifar_fast.Results(path, {"base_epochs": 24})
