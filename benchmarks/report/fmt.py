"""Formatting helpers shared by the report sections (markdown tables, mean ± std, the noise
rule's verdict words, the environment lines)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# A difference between two series counts only when it exceeds both of these.
NOISE_FLOOR_PT = 0.05


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan, 0
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return statistics.fmean(vals), sd, len(vals)


def mean(values: Sequence[float | None]) -> float:
    """The mean of the finite values (nan without one)."""
    return mean_std(values)[0]


def noise_gap(ours: Sequence[float | None], theirs: Sequence[float | None],
              scale: float = 1.0) -> tuple[float, float, int] | None:
    """The noise rule every comparison of the report uses: (difference of the means, noise,
    fewer seeds), the first two in ``scale`` units (100: fractions read as points); None when
    either side has no value. The difference is a tie when ``|d| <= noise``, with
    noise = max(sqrt(s1^2 + s2^2), NOISE_FLOOR_PT)."""
    (m1, s1, n1), (m2, s2, n2) = mean_std(ours), mean_std(theirs)
    if not n1 or not n2:
        return None
    return scale * (m1 - m2), max(scale * math.hypot(s1, s2), NOISE_FLOOR_PT), min(n1, n2)


def judge(ours: Sequence[float | None], theirs: Sequence[float | None], scale: float = 1.0,
          better: str = "better", worse: str = "worse") -> tuple[str, float, float, int] | None:
    """:func:`noise_gap` in words: (word, difference, noise, fewer seeds), the word '≈' for a
    tie, else ``better`` / ``worse`` by the sign of the difference; None where it has none."""
    if (gap := noise_gap(ours, theirs, scale)) is None:
        return None
    d, noise, n = gap
    return ("≈" if abs(d) <= noise else better if d > 0 else worse), d, noise, n


def pct(v: float | None) -> str:
    """A fraction in percent, two decimals ('–' for none)."""
    return "–" if v is None else f"{100 * v:.2f}"


def fmt_ms(values: Sequence[float | None], digits: int = 2, scale: float = 1.0,
           signed: bool = False) -> str:
    """Mean ± std over seeds of ``values`` × ``scale`` (the mean alone for one value, '–' for
    none)."""
    m, s, n = mean_std([None if v is None else v * scale for v in values])
    if n == 0:
        return "–"
    text = f"{m:{'+' if signed else ''}.{digits}f}"
    return text if n == 1 else f"{text} ± {s:.{digits}f}"


def fmt_num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        big_or_tiny = abs(v) >= 1000 or (v != 0 and abs(v) < 1e-3)
        return f"{v:.{digits}g}" if big_or_tiny else f"{round(v, 4):g}"
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, (int, float, str)) for x in v) and len(v) <= 12:
            return "(" + ", ".join(fmt_num(x, digits) for x in v) + ")"
        return f"[{len(v)} items]"
    if isinstance(v, dict):
        if all(isinstance(x, (int, float, str, bool)) or x is None for x in v.values()) \
                and len(v) <= 8:
            return ", ".join(f"{k}={fmt_num(x, digits)}" for k, x in v.items())
        return f"{{{len(v)} keys}}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_lines(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> list[str]:
    """A markdown table as its lines. ``align``: a letter per column, ``r`` right-aligned, any
    other (or none) left; a ``None`` cell is blank."""
    def line(cells: Sequence[Any]) -> str:
        return "|" + "|".join(" " if c is None else f" {c} " for c in cells) + "|"

    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align.ljust(len(header))) + "|"
    return [line(header), rule, *(line(r) for r in rows)]


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """:func:`md_lines` joined."""
    return "\n".join(md_lines(header, rows, align))


def env_lines(env: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    if not env:
        return ""
    v = dict(env.get("versions", {}))
    for key in ("torch", "torchvision", "python"):
        if key in env and key not in v:
            v[key] = env[key]
    started = runs[0].get("started") if runs else None
    procs = sorted({int(r["processes"]) for r in runs if r.get("processes")})
    procs_s = "/".join(str(p) for p in procs) if procs else str(env.get("processes", "?"))
    return (f"- **machine**: {env.get('device', '?')} ({env.get('cpu', '?')}, "
            f"{env.get('cpu_count', '?')} cores), {procs_s} worker processes (per invocation) × "
            f"{env.get('torch_threads_per_process', env.get('torch_threads', '?'))} torch "
            f"thread, load average at the last start {env.get('load_average', '?')}, CUDA "
            f"{'yes' if env.get('cuda') else 'no'}; other jobs shared the machine, so wall "
            f"times are upper bounds\n"
            f"- **versions**: " + ", ".join(f"{k} {x}" for k, x in v.items())
            + f"; git {str(env.get('git_commit') or env.get('git') or '')[:10]}"
            + (" (+ uncommitted changes)" if env.get("git_dirty") else "")
            + (f"; started {started}" if started else "") + "\n")
