"""Pareto front of a finished search: exact non-dominated sort, knee, tables and plots.

``load_records`` reads any study from its Optuna storage (both engines write there), and
``write_results`` produces ``pareto.csv`` (every trial, with ``is_pareto``), ``pareto.json``,
``pareto.png`` (matplotlib, Agg) and ``pareto.html`` (plotly, self-contained, works offline).

Example:
    >>> mask = pareto_front([[0.9, 100], [0.8, 50], [0.7, 80]], ["maximize", "minimize"])
    >>> mask.tolist()
    [True, True, False]
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas.extras import hint, installed
from nas.jsonio import write_json
from nas.plots import pareto_html, pareto_png
from nas.search_types import Objective, TrialRecord

log = logging.getLogger(__name__)

__all__ = [
    "TrialRecord",
    "front_records",
    "knee_point",
    "load_front",
    "load_records",
    "pareto_front",
    "pareto_ranks",
    "print_front",
    "write_results",
]


# -- non-dominated sorting -----------------------------------------------------------------------
def _as_minimization(points: Any, directions: Sequence[str]) -> np.ndarray:
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2:
        pts = pts.reshape(len(pts), -1) if pts.size else np.zeros((0, len(directions)))
    if pts.shape[1] != len(directions):
        raise ValueError(f"points have {pts.shape[1]} objectives, directions {len(directions)}")
    signs = []
    for d in directions:
        if d not in ("maximize", "minimize"):
            raise ValueError(f"direction must be 'maximize' or 'minimize', got {d!r}")
        signs.append(-1.0 if d == "maximize" else 1.0)
    return pts * np.asarray(signs)


def pareto_front(points: Any, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated points (exact, O(n^2 m)).

    A point is dominated when another is at least as good in every objective and strictly
    better in one. Duplicates do not dominate each other, so equal points are all on the front;
    a tie in one objective is broken by the others. Rows with a NaN are never on the front and
    never dominate.

    Args:
        points: ``(n, m)`` objective values.
        directions: ``m`` of ``"maximize"`` / ``"minimize"``.
    """
    pts = _as_minimization(points, directions)
    n = len(pts)
    valid = ~np.isnan(pts).any(axis=1)
    mask = np.zeros(n, dtype=bool)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return mask
    p = np.asarray(pts[idx], dtype=float)
    # le[i, j]: p[j] <= p[i] everywhere; lt[i, j]: p[j] < p[i] somewhere
    le = np.all(p[None, :, :] <= p[:, None, :], axis=2)
    lt = np.any(p[None, :, :] < p[:, None, :], axis=2)
    dominated = np.any(le & lt, axis=1)
    mask[idx] = ~dominated
    return mask


def pareto_ranks(points: Any, directions: Sequence[str]) -> np.ndarray:
    """Non-dominated sorting rank of each point (0 = front, 1 = next front...; NaN rows: -1)."""
    pts = _as_minimization(points, directions)
    ranks = np.full(len(pts), -1, dtype=int)
    remaining = np.flatnonzero(~np.isnan(pts).any(axis=1))
    rank = 0
    while remaining.size:
        front = pareto_front(pts[remaining], ["minimize"] * pts.shape[1])
        ranks[remaining[front]] = rank
        remaining = remaining[~front]
        rank += 1
    return ranks


def knee_point(points: Any, directions: Sequence[str]) -> int | None:
    """Index of the knee of the front of ``points`` (None when no valid point).

    Objectives are normalised to [0, 1] over the front. With two objectives the knee is the
    front point farthest from the line through the two extreme points (the classic "bend");
    with other counts, or when the front has fewer than three points, the point closest to the
    ideal point.
    """
    pts = _as_minimization(points, directions)
    front_idx = np.flatnonzero(pareto_front(pts, ["minimize"] * pts.shape[1]))
    if front_idx.size == 0:
        return None
    f = pts[front_idx]
    lo, hi = f.min(axis=0), f.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    z = (f - lo) / span
    if f.shape[1] == 2 and len(np.unique(z, axis=0)) >= 3:
        a = z[np.argmin(z[:, 0])]
        b = z[np.argmin(z[:, 1])]
        d = b - a
        norm = float(np.hypot(*d))
        if norm > 0:
            dist = np.abs(d[0] * (a[1] - z[:, 1]) - d[1] * (a[0] - z[:, 0])) / norm
            # only points on the ideal side of the chord form a knee
            below = (d[0] * (z[:, 1] - a[1]) - d[1] * (z[:, 0] - a[0])) < 0
            if below.any():
                dist = np.where(below, dist, -1.0)
                return int(front_idx[int(np.argmax(dist))])
    return int(front_idx[int(np.argmin(np.linalg.norm(z, axis=1)))])


# -- records -------------------------------------------------------------------------------------
def load_records(storage: Any, study_name: str) -> list[TrialRecord]:
    """Every trial of ``study_name`` (any state), in trial-number order.

    Args:
        storage: Database URL, ``"journal:PATH"``, a run directory (reads its ``study.db``),
            or an Optuna storage object.
        study_name: The study.
    """
    study = _load_study(storage, study_name)
    names = [o.name for o in load_study_objectives(study)]
    from nas.study import trial_record

    return [trial_record(t, names) for t in study.get_trials(deepcopy=False)]


def load_objectives(storage: Any, study_name: str) -> list[Objective]:
    """The objectives (names, directions) of a stored study."""
    return load_study_objectives(_load_study(storage, study_name))


def load_study_objectives(study: Any) -> list[Objective]:
    from nas.study import load_objectives as _load

    return _load(study)


def _load_study(storage: Any, study_name: str) -> Any:
    import optuna

    from nas.study import open_storage

    run_dir = None
    if isinstance(storage, Path) or (isinstance(storage, str) and "://" not in storage
                                      and not storage.startswith("journal:")):
        run_dir, storage = Path(storage), None
    store = open_storage(storage, run_dir, must_exist=True)
    try:
        return optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        names = optuna.study.get_all_study_names(store)
        raise KeyError(
            f"no study {study_name!r} in the storage; it holds {names or 'no studies'}"
        ) from None


def load_front(storage: Any, study_name: str) -> list[TrialRecord]:
    """The Pareto-front trials of a stored study, best first objective first
    (:func:`load_records` + :func:`front_records`; ``storage`` as there)."""
    study = _load_study(storage, study_name)
    objectives = load_study_objectives(study)
    from nas.study import trial_record

    names = [o.name for o in objectives]
    records = [trial_record(t, names) for t in study.get_trials(deepcopy=False)]
    return front_records(records, objectives)


def front_records(records: Sequence[TrialRecord], objectives: Sequence[Objective]
                  ) -> list[TrialRecord]:
    """The COMPLETE records on the Pareto front, sorted by the first objective (best first)."""
    done = [r for r in records if r.state == "COMPLETE" and r.values]
    if not done:
        return []
    mask = pareto_front(_values(done, objectives), [o.direction for o in objectives])
    front = [r for r, m in zip(done, mask, strict=True) if m]
    first = objectives[0]
    return sorted(front, key=lambda r: r.values[first.name],
                  reverse=first.direction == "maximize")


def _values(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> np.ndarray:
    return np.array([[float(r.values.get(o.name, math.nan)) for o in objectives]
                     for r in records], dtype=float).reshape(len(records), len(objectives))


def pareto_mask(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> np.ndarray:
    vals = _values(records, objectives)
    ok = np.array([r.state == "COMPLETE" for r in records], dtype=bool)
    vals[~ok] = math.nan
    return pareto_front(vals, [o.direction for o in objectives])


def record_widths(record: TrialRecord) -> dict[str, int] | None:
    """Layer widths of a trial: ``attrs["widths"]``, else ``attrs["arch_spec"]["widths"]``."""
    w = record.attrs.get("widths")
    if isinstance(w, Mapping):
        return dict(w)
    spec = record.attrs.get("arch_spec")
    if isinstance(spec, Mapping) and isinstance(spec.get("widths"), Mapping):
        return dict(spec["widths"])
    return None


# -- output files ----------------------------------------------------------------------------------
def write_results(
    records: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    out_dir: str | Path,
    *,
    baselines: Sequence[Mapping[str, Any]] | None = None,
    title: str | None = None,
) -> dict[str, Path]:
    """Write ``pareto.csv``, ``pareto.json``, ``pareto.png`` and ``pareto.html`` to ``out_dir``.

    Args:
        records: All trials (any state; only COMPLETE ones can be on the front).
        objectives: The search objectives, in study order.
        out_dir: Target directory (created).
        baselines: Reference points drawn with their own markers, e.g.
            ``{"label": "unpruned", "accuracy": 0.99, "macs": 4.2e5}``; an optional ``"kind"``
            groups points in the legend (``"uniform"`` for uniform-scaling points).
        title: Plot title.

    Returns:
        ``{"csv": path, "json": path, "png": path, "html": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    points = [dict(b) for b in (baselines or [])]
    mask = pareto_mask(records, objectives)
    paths = {
        "csv": _write_csv(records, objectives, mask, out / "pareto.csv"),
        "json": _write_json(records, objectives, mask, points, out / "pareto.json"),
    }
    paths["png"] = pareto_png(records, objectives, mask, points, out / "pareto.png", title,
                              knee=_knee_number(records, objectives))
    if installed("plotly"):  # the [html] extra
        paths["html"] = pareto_html(records, objectives, mask, points, out / "pareto.html",
                                    title)
    else:
        log.info("pareto.html not written: plotly is not installed (%s)", hint("plotly"))
    return paths


def _scalar_items(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in d.items()
            if v is None or isinstance(v, (bool, int, float, str))}


def _write_csv(records: Sequence[TrialRecord], objectives: Sequence[Objective],
               mask: np.ndarray, path: Path) -> Path:
    rows = []
    for r, on_front in zip(records, mask, strict=True):
        row: dict[str, Any] = {"number": r.number, "state": r.state}
        row.update({o.name: r.values.get(o.name, "") for o in objectives})
        row["is_pareto"] = bool(on_front)
        row.update(_scalar_items(r.params, "param."))
        row.update(_scalar_items(r.attrs, "attr."))
        rows.append(row)
    head = ["number", "state", *[o.name for o in objectives], "is_pareto"]
    extra = sorted({k for row in rows for k in row} - set(head))
    extra.sort(key=lambda k: (not k.startswith("param."), k))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=head + extra, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _knee_number(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> int | None:
    done = [r for r in records if r.state == "COMPLETE" and r.values]
    if not done:
        return None
    k = knee_point(_values(done, objectives), [o.direction for o in objectives])
    return None if k is None else done[k].number


def _write_json(records: Sequence[TrialRecord], objectives: Sequence[Objective], mask: np.ndarray,
                baselines: list[dict[str, Any]], path: Path) -> Path:
    data = {
        "objectives": [{"name": o.name, "direction": o.direction} for o in objectives],
        "front": [r.number for r, m in zip(records, mask, strict=True) if m],
        "knee": _knee_number(records, objectives),
        "trials": [
            {"number": r.number, "state": r.state, "values": r.values, "is_pareto": bool(m),
             "params": r.params, "attrs": r.attrs}
            for r, m in zip(records, mask, strict=True)
        ],
        "baselines": baselines,
    }
    return write_json(path, data)


# -- terminal ----------------------------------------------------------------------------------------
def format_si(value: float) -> str:
    """``123456.0 -> '123.5k'``; plain for small numbers and fractions."""
    if value is None or not math.isfinite(value):
        return str(value)
    a = abs(value)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{value / div:.4g}{suffix}"
    return f"{value:.4g}"


def print_front(records: Sequence[TrialRecord], objectives: Sequence[Objective], *,
                console: Any = None, title: str = "Pareto front") -> None:
    """Print the front as a ``rich`` table (trial, objectives, widths or params)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    front = front_records(records, objectives)
    knee = _knee_number(records, objectives)
    table = Table(title=f"{title} ({len(front)} of "
                  f"{sum(r.state == 'COMPLETE' for r in records)} complete trials)")
    table.add_column("trial", justify="right")
    for o in objectives:
        table.add_column(f"{o.name} {'↑' if o.direction == 'maximize' else '↓'}", justify="right")
    table.add_column("architecture")
    for r in front:
        widths = record_widths(r)
        arch = ", ".join(f"{k}={v}" for k, v in (widths or r.params).items())
        cells = [f"{r.number}{' (knee)' if r.number == knee else ''}"]
        cells += [format_si(r.values[o.name]) if abs(r.values[o.name]) >= 1e3
                  else f"{r.values[o.name]:.4f}" for o in objectives]
        table.add_row(*cells, arch)
    console.print(table)
