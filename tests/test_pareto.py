"""Pareto front on hand-made points, and the result files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from nas.pareto import knee_point, pareto_front, pareto_ranks, print_front, write_results
from nas.search_types import Objective, TrialRecord

MAXMIN = ["maximize", "minimize"]


def test_front_of_hand_made_points() -> None:
    pts = [[0.9, 100], [0.8, 50], [0.7, 80], [0.95, 300], [0.6, 50]]
    # (0.7, 80) is dominated by (0.8, 50); (0.6, 50) ties on MACs with (0.8, 50) and loses
    assert pareto_front(pts, MAXMIN).tolist() == [True, True, False, True, False]


def test_duplicates_and_ties_stay_on_the_front_together() -> None:
    pts = [[0.9, 100], [0.9, 100], [0.9, 120], [0.5, 10], [0.5, 10]]
    assert pareto_front(pts, MAXMIN).tolist() == [True, True, False, True, True]


def test_nan_rows_are_excluded_and_do_not_dominate() -> None:
    pts = [[math.nan, 1.0], [0.5, 10.0], [0.4, math.nan]]
    assert pareto_front(pts, MAXMIN).tolist() == [False, True, False]
    assert pareto_front(np.zeros((0, 2)), MAXMIN).tolist() == []


def test_directions_matter_and_are_validated() -> None:
    pts = [[1.0, 1.0], [2.0, 2.0]]
    assert pareto_front(pts, ["minimize", "minimize"]).tolist() == [True, False]
    assert pareto_front(pts, ["maximize", "maximize"]).tolist() == [False, True]
    assert pareto_front(pts, ["maximize", "minimize"]).tolist() == [True, True]
    with pytest.raises(ValueError, match="direction"):
        pareto_front(pts, ["max", "min"])


def test_ranks_peel_successive_fronts() -> None:
    pts = [[0.9, 100], [0.8, 120], [0.7, 140], [math.nan, 1]]
    assert pareto_ranks(pts, MAXMIN).tolist() == [0, 1, 2, -1]


def test_knee_is_the_bend_of_the_front() -> None:
    # accuracy saturates: 0.5 -> 0.9 quickly, then slowly to 0.93 at 10x the MACs
    pts = [[0.50, 10], [0.90, 40], [0.92, 200], [0.93, 400], [0.40, 300]]
    assert knee_point(pts, MAXMIN) == 1
    assert knee_point([[0.5, 10]], MAXMIN) == 0
    assert knee_point([[math.nan, 1]], MAXMIN) is None


def _records() -> list[TrialRecord]:
    vals = [(0.90, 4.0e5), (0.85, 1.0e5), (0.80, 2.0e5), (0.97, 9.0e5), (0.60, 2.0e4)]
    recs = [
        TrialRecord(i, "COMPLETE", {"accuracy": a, "macs": m}, {"eps": 0.1 * i},
                    {"widths": {"conv1": 4 + i, "fc1": 8}, "acc_ft": a})
        for i, (a, m) in enumerate(vals)
    ]
    recs.append(TrialRecord(5, "FAIL", {}, {"eps": 0.5}, {"error": "RuntimeError: boom"}))
    recs.append(TrialRecord(6, "PRUNED", {}, {"eps": 0.6}, {"rejected": "over budget"}))
    return recs


OBJS = [Objective("accuracy", "maximize"), Objective("macs", "minimize")]
BASELINES = [{"label": "unpruned", "accuracy": 0.98, "macs": 1.2e6},
             {"label": "uniform x0.5", "kind": "uniform", "accuracy": 0.88, "macs": 3.0e5},
             {"label": "uniform x0.25", "kind": "uniform", "accuracy": 0.75, "macs": 8.0e4}]


def test_result_files_are_written_and_parseable(tmp_path: Path) -> None:
    paths = write_results(_records(), OBJS, tmp_path, baselines=BASELINES)
    assert set(paths) == {"csv", "json", "png", "html"}

    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["number"] for r in rows] == [str(i) for i in range(7)]
    assert [r["is_pareto"] for r in rows] == ["True", "True", "False", "True", "True",
                                             "False", "False"]
    assert rows[5]["state"] == "FAIL" and rows[5]["attr.error"] == "RuntimeError: boom"
    assert rows[0]["param.eps"] == "0.0"

    data = json.loads(paths["json"].read_text())
    assert data["objectives"] == [{"name": "accuracy", "direction": "maximize"},
                                  {"name": "macs", "direction": "minimize"}]
    assert data["front"] == [0, 1, 3, 4]
    assert data["knee"] in data["front"]
    assert len(data["trials"]) == 7 and data["baselines"] == BASELINES

    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    html = paths["html"].read_text()
    # self-contained (works offline): plotly.js inlined, no <script src=...> from a CDN
    assert len(html) > 1_000_000 and '<script src="http' not in html
    assert "trial 1" in html and "conv1=5" in html and "uniform" in html


def test_front_table_prints(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    print_front(_records(), OBJS, console=console)
    text = console.export_text()
    assert "4 of 5 complete trials" in text and "conv1=5" in text and "(knee)" in text
