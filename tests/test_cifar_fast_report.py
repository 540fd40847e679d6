"""The fast-family head-to-head's driver plan, noise-rule verdicts and report (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import cifar_fast
from benchmarks.cifar_fast import plan, plot, render_markdown, verdict

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cifar_fast.json"


def test_plan_runs_bases_and_fine_tuned_arms_before_the_long_retrains() -> None:
    units = plan([0, 1], [0.5], None)
    kinds = [k for k, _, _ in units]
    assert units[0] == ("base", 0, None)
    assert kinds.index("uniform") > max(i for i, k in enumerate(kinds) if k == "entropic_budget")
    assert {k for k in kinds} == set(cifar_fast.KINDS)
    only = plan([0], [0.5, 0.33], {"uniform", "scratch_b"})
    assert only == [("uniform", 0, 0.5), ("scratch_b", 0, 0.5),
                    ("uniform", 0, 0.33), ("scratch_b", 0, 0.33)]


def test_verdict_applies_the_noise_rule() -> None:
    # Two seeds each: the difference (0.2 pt) is inside sqrt(s1^2 + s2^2) (~0.28 pt): a tie.
    assert verdict([0.890, 0.894], [0.888, 0.892]).startswith("≈")
    # Tight seeds, 0.5 pt apart: a win, and no one-seed caveat.
    assert verdict([0.890, 0.891], [0.885, 0.886]) == "entropic better (+0.50 pt)"
    # One seed: below the 0.05 pt floor is a tie, above it the verdict says it is one seed.
    assert verdict([0.8900], [0.8897]).startswith("≈")
    assert verdict([0.880], [0.890]) == "entropic worse, 1 seed (-1.00 pt)"
    assert verdict([], [0.9]) == "–"


def test_report_renders_every_arm_of_the_committed_results(tmp_path: Path) -> None:
    data = json.loads(RESULTS.read_text())
    md = render_markdown(data)
    kinds = {r["kind"] for r in data["rows"].values()}
    for kind in kinds - {"base"}:
        assert f"| {cifar_fast.LABELS[kind]} |" in md, kind
    assert "| 0 | 24 |" in md  # the seed-0 base row
    png = plot(data, tmp_path / "fig.png")
    assert png.stat().st_size > 10_000


def test_report_places_the_equal_training_arms_beside_the_others() -> None:
    """Scratch-E and the long fine-tune are rows of their point, compared with both entropic arms."""
    data = json.loads(RESULTS.read_text())
    rows = data["rows"]
    bud = rows["entropic_budget/s0/x0.5"]
    bud["test_acc_tta"] = 0.89  # synthetic accuracies: the verdicts below are the rule's
    rows["scratch_e/s0/x0.5"] = {**rows["uniform/s0/x0.5"], "kind": "scratch_e",
                                 "widths": bud["widths"], "test_acc_tta": 0.9}
    rows["entropic_budget_long/s0/x0.5"] = {**bud, "kind": "entropic_budget_long",
                                            "test_acc_tta": 0.91}
    md = render_markdown(data)
    point = md.split("**MACs x0.5**")[1].split("**MACs")[0]
    long_row = next(line for line in point.splitlines()
                    if line.startswith(f"| {cifar_fast.LABELS['entropic_budget_long']} |"))
    assert "91.00 (1 seed)" in long_row
    assert "entropic worse, 1 seed (-1.00 pt)" in next(
        line for line in point.splitlines()
        if line.startswith(f"| {cifar_fast.LABELS['scratch_e']} |"))
    assert point.count(cifar_fast.LABELS["scratch_e"]) == 2  # accuracy row + widths row


def test_report_shows_every_point_with_rows_whatever_the_last_run_asked_for() -> None:
    data = json.loads(RESULTS.read_text())
    data["settings"]["ratios"] = [0.33]  # a later run with --ratios 0.33 rewrote the settings
    md = render_markdown(data)
    assert "**MACs x0.5**" in md and "**MACs x0.33**" in md
    assert md.index("**MACs x0.5**") < md.index("**MACs x0.33**")


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


def _row(kind: str, seed: int, acc: float) -> dict:
    return {"kind": kind, "seed": seed, "ratio": 0.5, "test_acc_tta": acc}


def test_point_verdicts_compare_on_the_seeds_both_arms_ran() -> None:
    """An arm run on seed 0 only is judged against the entropic arm's seed 0, not its mean;
    the +0.3 pt target needs two seeds and a difference beyond the noise rule."""
    at = [_row("entropic_budget_lowlr", 0, 0.904), _row("entropic_budget_lowlr", 1, 0.902),
          _row("tp_magnitude_lowlr", 0, 0.899), _row("tp_magnitude_lowlr", 1, 0.897),
          _row("tp_taylor_lowlr", 0, 0.9041),  # one seed: higher mean, but judged on seed 0
          _row("uniform", 0, 0.907), _row("uniform", 1, 0.905),
          _row("scratch_b", 0, 0.900)]
    lines = {ln.split(" | ")[0]: ln for ln in cifar_fast._verdicts(at, 0.5) if ln.startswith("| ")}
    tp = lines["| entropic vs the best Torch-Pruning criterion"]
    # the criteria are ranked on seed 0, the one both ran: GroupTaylor 90.41 vs GroupMagnitude
    # 89.90 (its two-seed mean, 89.80, is not compared with GroupTaylor's one seed)
    assert "TP GroupTaylor" in tp and "| 1 |" in tp and "not shown (1 seed)" in tp
    uni = lines["| entropic vs uniform of equal MACs"]
    assert "| 2 |" in uni and "entropic worse (-0.30 pt)" in uni and "not met" in uni
    sb = lines["| pruned + FT vs Scratch-B (the found widths from scratch, the base's compute)"]
    assert "pruned + FT better, 1 seed (+0.40 pt)" in sb
    # two seeds, tight, 0.5 pt above: the target is met
    at2 = [_row("entropic_budget_lowlr", 0, 0.905), _row("entropic_budget_lowlr", 1, 0.906),
           _row("tp_magnitude_lowlr", 0, 0.900), _row("tp_magnitude_lowlr", 1, 0.901),
           _row("tp_taylor_lowlr", 0, 0.899), _row("tp_taylor_lowlr", 1, 0.900)]
    assert any("**met**" in ln for ln in cifar_fast._verdicts(at2, 0.5))
    assert cifar_fast._verdicts([_row("uniform", 0, 0.9)], 0.5) == []
    # only the entropic arm: no table
    assert cifar_fast._verdicts([_row("entropic_budget_lowlr", 0, 0.9)], 0.5) == []


def test_best_criterion_is_chosen_on_shared_seeds_and_met_needs_every_criterion() -> None:
    ours = [_row("entropic_budget_lowlr", 0, 0.905), _row("entropic_budget_lowlr", 1, 0.906)]
    # GroupMagnitude is better on seed 0 (the seed both criteria ran) but has a worse seed 1
    at = ours + [_row("tp_magnitude_lowlr", 0, 0.903), _row("tp_magnitude_lowlr", 1, 0.890),
                 _row("tp_taylor_lowlr", 0, 0.900)]
    tp = next(ln for ln in cifar_fast._verdicts(at, 0.5) if ln.startswith("| entropic vs the best Torch-Pruning"))
    assert "TP GroupMagnitude" in tp and "| 2 |" in tp
    # GroupTaylor not run at the point: the verdict is shown, the target is not
    at = ours + [_row("tp_magnitude_lowlr", 0, 0.900), _row("tp_magnitude_lowlr", 1, 0.901)]
    tp = next(ln for ln in cifar_fast._verdicts(at, 0.5) if ln.startswith("| entropic vs the best Torch-Pruning"))
    assert "not run here: TP GroupTaylor" in tp and "entropic better (+0.50 pt)" in tp
    assert tp.endswith("| not shown (criteria missing) |") and "**met**" not in tp


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
