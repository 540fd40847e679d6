"""The one noise rule every report section compares arms with (benchmarks.report.fmt.noise_gap)."""

from __future__ import annotations

import math

import pytest

from benchmarks.report import cifar_fast as cifar_report
from benchmarks.report import lenet_mnist
from benchmarks.report.fmt import NOISE_FLOOR_PT, noise_gap


def test_gap_is_the_difference_of_means_against_the_combined_spread() -> None:
    gap = noise_gap([99.0, 99.2], [98.5, 98.9])
    assert gap is not None
    d, noise, n = gap
    assert d == pytest.approx(0.4)
    assert noise == pytest.approx(math.hypot(0.1414214, 0.2828427), rel=1e-6)
    assert n == 2


def test_one_seed_falls_back_to_the_floor_and_scale_reads_fractions_as_points() -> None:
    gap = noise_gap([0.9003], [0.9000], scale=100.0)
    assert gap is not None
    d, noise, n = gap
    assert d == pytest.approx(0.03)
    assert noise == NOISE_FLOOR_PT  # no spread on one seed: the floor decides
    assert n == 1


def test_missing_values_are_skipped_and_an_empty_side_has_no_gap() -> None:
    assert noise_gap([None, 1.0], [0.5]) == (0.5, NOISE_FLOOR_PT, 1)
    assert noise_gap([], [0.5]) is None
    assert noise_gap([float("nan")], [0.5]) is None


def pts(xs: list[float]) -> list[float]:
    """Fractions as points (the LeNet tables hold points)."""
    return [100 * x for x in xs]


def test_every_section_calls_the_same_pairs_a_tie() -> None:
    tie_ours, tie_theirs = [0.890, 0.894], [0.888, 0.892]  # 0.2 pt apart, spread ~0.28 pt
    win_ours, win_theirs = [0.890, 0.891], [0.885, 0.886]  # 0.5 pt apart, spread ~0.1 pt
    assert cifar_report.verdict(tie_ours, tie_theirs).startswith("≈")
    assert cifar_report.verdict(win_ours, win_theirs).startswith("entropic better")
    # the LeNet table reads "other minus pruned": the win above is the other side worse
    assert "≈" in lenet_mnist._verdict(pts(tie_ours), {"uniform": pts(tie_theirs)})
    assert "uniform worse (-0.50)" in lenet_mnist._verdict(pts(win_ours), {"uniform": pts(win_theirs)})
