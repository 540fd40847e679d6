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
from typing import Any, Literal

import numpy as np

from nas.extras import hint, installed
from nas.jsonio import write_json
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

_BASELINE_MARKERS = ("*", "D", "s", "^", "v", "P", "X", "h")
_BASELINE_COLORS = ("tab:green", "tab:blue", "tab:purple", "tab:orange", "tab:brown", "tab:cyan")


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
    paths["png"] = _write_png(records, objectives, mask, points, out / "pareto.png", title)
    if installed("plotly"):  # the [html] extra
        paths["html"] = _write_html(records, objectives, mask, points, out / "pareto.html",
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


def plot_axes(objectives: Sequence[Objective]) -> tuple[Objective, Objective]:
    """(x, y) of the 2-D plot: y is ``accuracy`` (or the first maximised objective), x the next."""
    if len(objectives) < 2:
        raise ValueError("a Pareto plot needs at least two objectives")
    by_name = {o.name: o for o in objectives}
    y = by_name.get("accuracy") or next(
        (o for o in objectives if o.direction == "maximize"), objectives[0])
    macs = by_name.get("macs")
    x = macs if macs is not None and macs is not y else next(o for o in objectives if o is not y)
    return x, y


def _front_line(xs: np.ndarray, ys: np.ndarray, x_obj: Objective
                ) -> tuple[np.ndarray, np.ndarray, Literal["pre", "post"]]:
    order = np.argsort(xs, kind="stable")
    # best attainable y at a given x: carried right from a point when x is minimised
    return xs[order], ys[order], "post" if x_obj.direction == "minimize" else "pre"


def _log_x(xs: np.ndarray) -> bool:
    xs = xs[np.isfinite(xs)]
    return bool(xs.size and (xs > 0).all() and xs.max() / xs.min() > 20)


def _write_png(records: Sequence[TrialRecord], objectives: Sequence[Objective], mask: np.ndarray,
               baselines: list[dict[str, Any]], path: Path, title: str | None) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=120)
    try:
        if len(objectives) >= 2:
            x_obj, y_obj = plot_axes(objectives)
            done = [(r, m) for r, m in zip(records, mask, strict=True) if r.state == "COMPLETE"]
            xs = np.array([r.values[x_obj.name] for r, _ in done], dtype=float)
            ys = np.array([r.values[y_obj.name] for r, _ in done], dtype=float)
            on = np.array([m for _, m in done], dtype=bool)
            if (~on).any():
                ax.scatter(xs[~on], ys[~on], s=18, c="0.6", alpha=0.7, label="trials")
            if on.any():
                fx, fy, where = _front_line(xs[on], ys[on], x_obj)
                ax.step(fx, fy, where=where, color="tab:red", lw=1.2, alpha=0.8)
                ax.scatter(fx, fy, s=30, c="tab:red", zorder=3, label="Pareto front")
            knee = _knee_number(records, objectives)
            if knee is not None:
                kr = next(r for r in records if r.number == knee)
                ax.annotate(f"knee (#{knee})", (kr.values[x_obj.name], kr.values[y_obj.name]),
                            xytext=(8, -14), textcoords="offset points", fontsize=8)
            all_x = [*xs.tolist()]
            kinds: dict[str, str] = {}
            for b in baselines:
                if x_obj.name not in b or y_obj.name not in b:
                    continue
                kind = str(b.get("kind", b.get("label", "baseline")))
                first = kind not in kinds
                marker = kinds.setdefault(kind, _BASELINE_MARKERS[len(kinds) % len(_BASELINE_MARKERS)])
                ax.scatter([b[x_obj.name]], [b[y_obj.name]], marker=marker, s=90, alpha=0.8,
                           edgecolors="black", zorder=4, label=kind if first else None,
                           c=_BASELINE_COLORS[list(kinds).index(kind) % len(_BASELINE_COLORS)])
                if b.get("label") and b.get("label") != kind:
                    ax.annotate(str(b["label"]), (b[x_obj.name], b[y_obj.name]),
                                xytext=(6, 4), textcoords="offset points", fontsize=7)
                all_x.append(float(b[x_obj.name]))
            if _log_x(np.asarray(all_x, dtype=float)):
                ax.set_xscale("log")
            else:
                from matplotlib.ticker import FuncFormatter

                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_si(v)))
            ax.set_xlabel(f"{x_obj.name} ({'lower' if x_obj.direction == 'minimize' else 'higher'} is better)")
            ax.set_ylabel(f"{y_obj.name} ({'higher' if y_obj.direction == 'maximize' else 'lower'} is better)")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, loc="best")
        else:
            complete = [r for r in records if r.state == "COMPLETE"]
            ax.plot([r.number for r in complete],
                    [r.values[objectives[0].name] for r in complete], "o")
            ax.set_xlabel("trial")
            ax.set_ylabel(objectives[0].name)
        ax.grid(alpha=0.3)
        ax.set_title(title or "Pareto front")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _hover(r: TrialRecord, objectives: Sequence[Objective]) -> str:
    lines = [f"trial {r.number}"]
    lines += [f"{o.name} = {_fmt(r.values.get(o.name))}" for o in objectives]
    widths = record_widths(r)
    if widths:
        lines.append("widths: " + ", ".join(f"{k}={v}" for k, v in widths.items()))
    elif r.params:
        lines.append("params: " + ", ".join(f"{k}={_fmt(v)}" for k, v in r.params.items()))
    # plotly hover text: wrap long lines
    out = []
    for line in lines:
        while len(line) > 90:
            cut = line.rfind(", ", 0, 90)
            cut = 90 if cut < 0 else cut + 1
            out.append(line[:cut])
            line = "  " + line[cut:].lstrip()
        out.append(line)
    return "<br>".join(out)


def _write_html(records: Sequence[TrialRecord], objectives: Sequence[Objective], mask: np.ndarray,
                baselines: list[dict[str, Any]], path: Path, title: str | None) -> Path:
    import plotly.graph_objects as go

    fig = go.Figure()
    if len(objectives) >= 2:
        x_obj, y_obj = plot_axes(objectives)
        done = [(r, m) for r, m in zip(records, mask, strict=True) if r.state == "COMPLETE"]
        for on_front, name, color in ((False, "trials", "#999999"), (True, "Pareto front", "#d62728")):
            sel = [r for r, m in done if bool(m) == on_front]
            if not sel:
                continue
            if on_front:
                fx, fy, where = _front_line(
                    np.array([r.values[x_obj.name] for r in sel]),
                    np.array([r.values[y_obj.name] for r in sel]), x_obj)
                fig.add_trace(go.Scatter(x=fx, y=fy, mode="lines", showlegend=False,
                                         line={"shape": "hv" if where == "post" else "vh",
                                               "color": color, "width": 1},
                                         hoverinfo="skip"))
            fig.add_trace(go.Scatter(
                x=[r.values[x_obj.name] for r in sel], y=[r.values[y_obj.name] for r in sel],
                mode="markers", name=name, marker={"color": color, "size": 9 if on_front else 7},
                text=[_hover(r, objectives) for r in sel], hovertemplate="%{text}<extra></extra>",
            ))
        symbols = ("star", "diamond", "square", "triangle-up", "triangle-down", "cross", "x")
        kinds: dict[str, list[dict[str, Any]]] = {}
        for b in baselines:
            if x_obj.name in b and y_obj.name in b:
                kinds.setdefault(str(b.get("kind", b.get("label", "baseline"))), []).append(b)
        for i, (kind, pts) in enumerate(kinds.items()):
            fig.add_trace(go.Scatter(
                x=[b[x_obj.name] for b in pts], y=[b[y_obj.name] for b in pts], mode="markers",
                name=kind, marker={"symbol": symbols[i % len(symbols)], "size": 13,
                                   "line": {"width": 1, "color": "black"}},
                text=[f"{b.get('label', kind)}<br>{x_obj.name} = {_fmt(b[x_obj.name])}"
                      f"<br>{y_obj.name} = {_fmt(b[y_obj.name])}" for b in pts],
                hovertemplate="%{text}<extra></extra>",
            ))
        xs = [r.values[x_obj.name] for r, _ in done] + [b[x_obj.name] for p in kinds.values() for b in p]
        fig.update_layout(xaxis_title=x_obj.name, yaxis_title=y_obj.name,
                          xaxis_type="log" if _log_x(np.asarray(xs, dtype=float)) else "linear")
    fig.update_layout(title=title or "Pareto front", template="plotly_white",
                      hoverlabel={"align": "left"})
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


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
