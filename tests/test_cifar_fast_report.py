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
