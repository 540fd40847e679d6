"""Every figure the toolkit draws: the Pareto front (PNG and interactive HTML), training
curves, and the kept widths per layer. Data in, a file out; matplotlib always (Agg, no
display), plotly only for the HTML (the ``[html]`` extra)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

import search_spaces
from nas.search_types import Objective, TrialRecord
from search_spaces import ArchSpec

__all__ = ["pareto_html", "pareto_png", "plot_axes", "plot_history", "plot_widths"]


_BASELINE_MARKERS = ("*", "D", "s", "^", "v", "P", "X", "h")


_BASELINE_COLORS = ("tab:green", "tab:blue", "tab:purple", "tab:orange", "tab:brown", "tab:cyan")


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


def pareto_png(records: Sequence[TrialRecord], objectives: Sequence[Objective], mask: np.ndarray,
               baselines: list[dict[str, Any]], path: Path, title: str | None, *,
               knee: int | None = None) -> Path:
    """The front as a PNG (matplotlib, Agg): trials, the front's staircase, the knee, the
    baselines; a log x axis when the costs span more than 20x."""
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

                from nas.pareto import format_si

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
    from nas.pareto import record_widths  # (pareto imports this module)

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


def pareto_html(records: Sequence[TrialRecord], objectives: Sequence[Objective], mask: np.ndarray,
                baselines: list[dict[str, Any]], path: Path, title: str | None) -> Path:
    """The front as a self-contained HTML page (plotly, works offline), a hover text per
    trial with its objectives and widths."""
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


def plot_history(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Save loss and accuracy curves (train and val per epoch) as a PNG; return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for split, style in (("train", "-o"), ("val", "-s")):
        losses = [r.get(f"{split}_loss") for r in history]
        accs = [r.get(f"{split}_acc") for r in history]
        if any(v is not None for v in losses):
            ax_loss.plot(epochs, [math.nan if v is None else v for v in losses], style,
                         ms=3, label=split)
        if any(v is not None for v in accs):
            ax_acc.plot(epochs, [math.nan if v is None else 100 * v for v in accs], style,
                        ms=3, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=120)
    return path


def plot_widths(spec: ArchSpec, path: Path, *, title: str | None = None) -> Path:
    """Bar plot of kept channels per layer against the family's original widths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fam = search_spaces.get_family(spec.family)
    keys = list(fam.default_widths)
    orig = [fam.default_widths[k] for k in keys]
    kept = [spec.widths[k] for k in keys]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(keys) + 2), 3.2))
    xs = range(len(keys))
    ax.bar(xs, orig, color="#d0d7de", label="original")
    ax.bar(xs, kept, color="#2f81f7", label="kept")
    ax.set_xticks(list(xs), keys, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("channels / features")
    ax.set_title(title or f"{spec.family}: kept width per layer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
