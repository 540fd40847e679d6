"""The fast-family head-to-head's driver plan, noise-rule verdicts and report (no training)."""

from __future__ import annotations

import json
from pathlib import Path

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
        assert cifar_fast.LABELS[kind] in md, kind
    assert "| 0 | 24 |" in md  # the seed-0 base row
    png = plot(data, tmp_path / "fig.png")
    assert png.stat().st_size > 10_000
