"""The fast-family head-to-head's driver: unit plan, which widths each arm takes, and the
carry-over of a committed partial checkpoint (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import cifar_fast
from benchmarks.cifar_fast import plan


def bench(tmp_path: Path, **settings: float) -> cifar_fast.Bench:
    return cifar_fast.Bench(cifar_fast.experiment({"base_epochs": 24, **settings},
                                                  tmp_path / "work", results_dir=tmp_path / "results"))


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
    b = bench(tmp_path)
    res = b.res
    with pytest.raises(SystemExit, match="s1 x0.5.*target"):
        b.tp_target(1, 0.5)
    res.put(cifar_fast.key_of("entropic_budget_lowlr", 1, 0.5), {"macs": 10})
    assert b.tp_target(1, 0.5) == ("entropic_budget_lowlr", res.get("entropic_budget_lowlr/s1/x0.5"))
    res.put(cifar_fast.key_of("entropic", 1, 0.5), {"macs": 11})
    assert b.tp_target(1, 0.5)[0] == "entropic"


def test_scratch_retrains_take_the_budget_arms_widths_at_either_fine_tune_lr(tmp_path: Path) -> None:
    """A seed that ran only the lowered-lr budget arm (seed 1) still has an architecture for
    Scratch-E / Scratch-B: the same pruned net's widths; the recipe-lr arm comes first."""
    b = bench(tmp_path, base_epochs=2, scratch_cap=3.0)
    res = b.res
    full = dict(cifar_fast.search_spaces.default_spec(cifar_fast.FAMILY).widths)
    narrow = {k: max(1, v // 4) for k, v in full.items()}
    with pytest.raises(SystemExit, match="entropic s1 x0.5 has not run"):
        b.scratch_arch(1, 0.5, "scratch_b")
    res.put(cifar_fast.key_of("entropic_budget_lowlr", 1, 0.5), {"widths": narrow, "macs_ratio": 0.5})
    spec, factor, arch_from, epochs = b.scratch_arch(1, 0.5, "scratch_b")
    assert (dict(spec.widths), factor, arch_from, epochs) == (narrow, None, "entropic_budget_lowlr", 4)
    assert b.scratch_arch(1, 0.5, "scratch_e")[3] == 2  # Scratch-E: the base's epochs
    half = {k: max(1, v // 2) for k, v in full.items()}
    res.put(cifar_fast.key_of("entropic_budget", 1, 0.5), {"widths": half, "macs_ratio": 0.25})
    spec, _, arch_from, epochs = b.scratch_arch(1, 0.5, "scratch_b")
    assert (dict(spec.widths), arch_from, epochs) == (half, "entropic_budget", 6)  # cap x3
    spec, factor, arch_from, _ = b.scratch_arch(1, 0.5, "uniform")
    assert arch_from is None and factor is not None and 0.6 < factor < 0.8


def test_a_committed_partial_checkpoint_seeds_a_fresh_work_dir(tmp_path: Path) -> None:
    """A unit cut off by a session's end resumes on a fresh machine from the ``last/``
    checkpoint committed beside the bases; a work dir that has its own is left alone."""
    exp = bench(tmp_path).exp
    src = tmp_path / "results" / "cifar_fast_partial" / "scratch_b_s0_x0.33" / "last"
    src.mkdir(parents=True)
    (src / "model.json").write_text("{}")
    unit = tmp_path / "work" / "scratch_b_s0_x0.33"
    exp.seed_from_partial(unit)
    assert (unit / "last" / "model.json").read_text() == "{}"
    (unit / "last" / "model.json").write_text('{"epoch": 9}')  # the run went on here
    exp.seed_from_partial(unit)
    assert (unit / "last" / "model.json").read_text() == '{"epoch": 9}'
    exp.seed_from_partial(tmp_path / "work" / "other_unit")  # nothing committed: no-op
    assert not (tmp_path / "work" / "other_unit").exists()
