"""The fast CIFAR-10 family's head-to-head (``benchmarks/cifar_fast.py``): tables, verdicts
under the noise rule, the README's summary and the accuracy-vs-MACs figure (no training)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pruning
import search_spaces
from benchmarks.cifar_fast import FAMILY, HEADLINE
from benchmarks.report.fmt import ROOT, judge, md_lines, mean, mean_std, noise_gap, pct

Row = dict[str, Any]
LABELS = {  # every arm, in the order of the full tables
    "entropic": "entropic (eps_L2 bisected) + FT",
    "entropic_budget": "entropic, budget allocation + FT",
    "tp_magnitude": "TP GroupMagnitude + FT",
    "tp_taylor": "TP GroupTaylor + FT",
    "uniform": "uniform (scratch, base epochs)",
    "entropic_budget_lowlr": "entropic, budget allocation + FT at a lowered lr (low_lr_scale)",
    "tp_magnitude_lowlr": "TP GroupMagnitude + FT at the lowered lr",
    "tp_taylor_lowlr": "TP GroupTaylor + FT at the lowered lr",
    "entropic_budget_long": "entropic, budget allocation + FT for the base's epochs",
    "scratch_e": "Scratch-E of the entropic arch (base epochs, as uniform)",
    "scratch_b": "Scratch-B of the entropic arch (budget arm where run)",
}
SUMMARY_ARMS = {  # the README's table: the arms fine-tuned as the config does, the peers, then
    # the recipe-lr fine-tunes and the longer retrains
    "entropic_budget_lowlr": "entropic, budget allocation (`target_macs`), + FT at lr x0.2",
    "tp_magnitude_lowlr": "Torch-Pruning GroupMagnitude, global, + FT at lr x0.2",
    "tp_taylor_lowlr": "Torch-Pruning GroupTaylor, global, + FT at lr x0.2",
    "uniform": "uniform widths, from scratch (base epochs)",
    "scratch_e": "Scratch-E: the entropic widths, from scratch (base epochs)",
    "scratch_b": "Scratch-B: the entropic widths, from scratch (base compute)",
    "entropic_budget": "entropic, budget allocation, + FT at the recipe lr",
    "tp_magnitude": "Torch-Pruning GroupMagnitude, + FT at the recipe lr",
    "tp_taylor": "Torch-Pruning GroupTaylor, + FT at the recipe lr",
    "entropic_budget_long": "entropic, budget allocation, + FT for the base's epochs",
}
LOWLR = ("tp_magnitude_lowlr", "tp_taylor_lowlr")  # compared with entropic_budget_lowlr
MACS_ARMS = (HEADLINE, "tp_magnitude_lowlr", "tp_taylor_lowlr", "uniform")
TARGET_PT = 0.3  # the target: entropic >= 0.3 pt above the best Torch-Pruning criterion and uniform
FIGURE = "figures/cifar_fast_acc_vs_macs.png"


def _pm(vals: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """Mean ± std over seeds of fractions, in ``scale`` units; a single seed is said."""
    m, sd, n = mean_std(vals)
    if n == 0:
        return "–"
    return f"{scale * m:.{digits}f}" + (f" ± {scale * sd:.{digits}f}" if n > 1 else " (1 seed)")


def verdict(ours: list[float], theirs: list[float]) -> str:
    """Entropic compared with another arm, in points, with the noise rule.

    With one seed on either side the spread is unknown: the verdict then says so instead of
    calling a difference above the 0.05 pt floor a win.
    """
    if (j := judge(ours, theirs, 100.0, "entropic better", "entropic worse")) is None:
        return "–"
    word, d, _, n = j
    return f"{word}{', 1 seed' if n < 2 and word != '≈' else ''} ({d:+.2f} pt)"


def _points(rows: list[Row]) -> list[tuple[float, list[Row]]]:
    """Every MACs point that has rows, largest first, with its rows (a run's settings name
    only the ratios that run asked for)."""
    ratios = sorted({r["ratio"] for r in rows if r.get("ratio") is not None}, reverse=True)
    return [(ratio, [r for r in rows if r.get("ratio") == ratio]) for ratio in ratios]


def _arms(at: list[Row], kinds: Iterable[str]) -> Iterator[tuple[str, list[Row]]]:
    """(kind, its rows) of each of ``kinds`` that ran at the point."""
    for kind in kinds:
        if rs := [r for r in at if r["kind"] == kind]:
            yield kind, rs


def _by_seed(at: list[Row], kind: str) -> dict[int, float]:
    return {r["seed"]: r["test_acc_tta"] for r in at if r["kind"] == kind}


def _common(ours: dict[int, float], theirs: dict[int, float]) -> tuple[list[float], list[float]]:
    """Both arms on the seeds both ran: a base seed is a shared start, so an arm run on seed 0
    only is compared with the entropic arm's seed 0, not with its mean over seeds."""
    seeds = sorted(set(ours) & set(theirs))
    return [ours[s] for s in seeds], [theirs[s] for s in seeds]


def paired(ours: dict[int, float], theirs: dict[int, float]) -> str:
    """:func:`verdict` over the seeds both arms ran."""
    return verdict(*_common(ours, theirs))


def _with_widths(at: list[Row], kind: str) -> list[Row]:
    """The arm's rows that record their widths, by seed."""
    return sorted((r for r in at if r["kind"] == kind and r.get("widths")), key=lambda r: r["seed"])


def _arm_cells(rs: list[Row]) -> list[str]:
    """An arm's params, accuracy right after pruning (before any fine-tune) and final."""
    return [f"{mean([r['params'] for r in rs]) / 1e6:.2f} M",
            _pm([r["after_prune"]["test_acc_tta"] for r in rs if "after_prune" in r]),
            _pm([r["test_acc_tta"] for r in rs])]


def render_markdown(data: dict[str, Any]) -> str:
    rows = list(data.get("rows", {}).values())
    s, env = data.get("settings", {}), data.get("env", {})
    out = [f"Device {env.get('device', '?')}, torch {env.get('torch', '?')}, bf16 autocast "
           f"{env.get('bf16_autocast', '?')}; batch {s.get('batch_size')}, lr {s.get('lr')}, "
           f"base {s.get('base_epochs')} epochs, fine-tune {s.get('ft_epochs')} epochs, "
           f"Scratch-B epochs = base / MACs ratio (cap x{s.get('scratch_cap')}), uniform "
           "nets train for the base's epochs. "
           "Accuracies (%) are on the test split with the recipe's flip + translate "
           "test-time augmentation (plain in brackets); no choice reads them (the MACs target "
           "alone fixes every arm). Latency: CPU, 1 thread, median ms per batch.", ""]
    bases = sorted((r for r in rows if r["kind"] == "base"), key=lambda r: r["seed"])
    table: list[list[Any]] = [
        [r["seed"], r["epochs"], f"{r['train_wall_s'] / 60:.1f}", f"{r['seconds_per_epoch']:.0f}",
         r.get("torch_threads", "?"), f"{r['load_avg'][0]:.1f}", pct(r["val_acc_tta"]),
         f"{pct(r['test_acc_tta'])} ({pct(r['test_acc'])})"] for r in bases]
    if bases:
        table.append(["mean", *[None] * 5, _pm([r["val_acc_tta"] for r in bases]),
                      _pm([r["test_acc_tta"] for r in bases])])
    out += md_lines(["base seed", "epochs", "wall (min)", "s / epoch", "threads", "load (1 min)",
                     "val", "test (plain)"], table, "lrrrrrrr")
    for ratio, at in _points(rows):
        bud, bud_low = _by_seed(at, "entropic_budget"), _by_seed(at, HEADLINE)
        table = [[LABELS[kind], len(rs), _pm([r["macs_ratio"] for r in rs], 1, 3),
                  *_arm_cells(rs), f"{mean([r['latency_ms_b1'] for r in rs]):.2f}",
                  f"{mean([r['latency_ms_b128'] for r in rs]):.1f}",
                  "–" if kind == "entropic_budget" else paired(bud, _by_seed(at, kind)),
                  "–" if kind == HEADLINE else paired(bud_low, _by_seed(at, kind))]
                 for kind, rs in _arms(at, LABELS)]
        out += ["", f"**MACs x{ratio:g}**", "", *md_lines(
            ["method", "seeds", "MACs ratio", "params", "right after pruning", "final", "b1 ms",
             "b128 ms", "entropic budget, recipe-lr FT, vs this arm",
             "entropic budget, lowered-lr FT, vs this arm"], table, "lrrrrrrrll")]
        out += _verdicts(at, ratio) + _widths_table(at) + _macs_table(at)
    return "\n".join(out) + "\n"


def _target(ours: list[float], theirs: list[float]) -> str:
    """Is entropic >= TARGET_PT above the other arm, as a verdict under the noise rule?"""
    gap = noise_gap(ours, theirs, scale=100.0)
    if gap is None:
        return "–"
    d, noise, n = gap
    if n < 2:
        return "not shown (1 seed)"
    return "**met**" if d >= TARGET_PT and d > noise else f"not met ({d:+.2f} pt, noise {noise:.2f})"


def _verdicts(at: list[Row], ratio: float) -> list[str]:
    """The point's answers: entropic vs the best Torch-Pruning criterion and vs uniform (the
    +0.3 pt target), the found widths vs uniform trained alike (Scratch-E), and pruned + FT
    vs Scratch-B. The best TP criterion is the one with the higher mean final accuracy among
    the lowered-lr TP arms (fine-tuned exactly as the entropic arm is)."""
    ours = _by_seed(at, HEADLINE)
    if not ours:
        return []
    table: list[list[Any]] = []

    def line(question: str, a: dict[int, float], b: dict[int, float], other: str,
             who: str = "entropic", target: bool | str = False) -> None:
        """One question's row; ``target``: check the +0.3 pt target, or the text to show."""
        x, y = _common(a, b)
        tgt = target if isinstance(target, str) else (_target(x, y) if target else "–")
        table.append([question, len(x), _pm(x), f"{other}: {_pm(y)}",
                      verdict(x, y).replace("entropic", who), tgt])

    ran = {k: _by_seed(at, k) for k in LOWLR if set(_by_seed(at, k)) & set(ours)}
    if ran:
        # the criteria are ranked on the seeds every one of them (and entropic) ran, so two
        # criteria are never compared on different seeds; the verdict then uses all the
        # seeds the best one shares with entropic
        shared = set(ours).intersection(*ran.values()) or None
        k = max(ran, key=lambda c: mean([ran[c][s] for s in sorted(shared or ran[c])]))
        question = "entropic vs the best Torch-Pruning criterion"
        missing = [LABELS[c] for c in LOWLR if c not in ran]
        if missing:
            question += f" (not run here: {', '.join(missing)})"
        # no "met" against a partial set of criteria
        line(question, ours, ran[k], LABELS[k],
             target="not shown (criteria missing)" if missing else True)
    if uni := _by_seed(at, "uniform"):
        line("entropic vs uniform of equal MACs", ours, uni, "uniform", target=True)
    if uni and (scratch_e := _by_seed(at, "scratch_e")):
        line("the found widths vs uniform widths, both from scratch for the base's epochs "
             "(Scratch-E)", scratch_e, uni, "uniform", who="found widths")
    if scratch_b := _by_seed(at, "scratch_b"):
        line("pruned + FT vs Scratch-B (the found widths from scratch, the base's compute)",
             ours, scratch_b, "Scratch-B", who="pruned + FT")
    if not table:  # a heading with no question answered is no table
        return []
    return ["", f"Verdicts at x{ratio:g}, each over the seeds both arms ran (entropic = "
            f"{LABELS[HEADLINE]}; target: entropic >= {TARGET_PT} pt above the best "
            "Torch-Pruning criterion and above uniform, beyond the noise rule):", "",
            *md_lines(["question", "seeds", "this side", "the other side", "verdict", "target"],
                      table, "lrllll")]


def summary_markdown(data: dict[str, Any], *, min_seeds: int = 1) -> str:
    """Per point, each arm's seeds, MACs, params, accuracy right after pruning and final
    (mean ± std over seeds), and the paired verdict against the entropic arm fine-tuned as
    the config does. ``min_seeds=2`` leaves out the one-seed arms (the README's headline;
    docs/results.md has them all)."""
    rows = list(data.get("rows", {}).values())
    bases = [r for r in rows if r["kind"] == "base"]
    table: list[list[Any]] = []
    if bases:
        epochs = "/".join(sorted({str(r.get("epochs", "?")) for r in bases}))
        table.append([f"unpruned base, {epochs} epochs", len(bases),
                      f"{mean([r['macs'] for r in bases]) / 1e6:.1f} M",
                      f"{mean([r['params'] for r in bases]) / 1e6:.2f} M", "–",
                      f"**{_pm([r['test_acc_tta'] for r in bases])}**", "–"])
    for ratio, at in _points(rows):
        ours = _by_seed(at, HEADLINE)
        table.append([f"**x{ratio:g} MACs**", *[None] * 6])
        table += [[SUMMARY_ARMS[kind], len(rs), f"x{mean([r['macs_ratio'] for r in rs]):.3f}",
                   *_arm_cells(rs), "–" if kind == HEADLINE else paired(ours, _by_seed(at, kind))]
                  for kind, rs in _arms(at, SUMMARY_ARMS) if len(rs) >= min_seeds]
    return "\n".join(md_lines(["arm", "seeds", "MACs", "params", "right after pruning", "final",
                               "entropic (lr x0.2) vs this arm"], table, "lrrrrrl")) + "\n"


def _widths_table(at: list[Row]) -> list[str]:
    """Where each arm spends the budget: per-layer widths (first seed) of every arm."""
    full = search_spaces.default_spec(FAMILY).widths
    keys = list(full)
    table = [[LABELS[kind], *(rs[0]["widths"][k] for k in keys)]
             for kind in LABELS if (rs := _with_widths(at, kind))]
    return ["", "Widths per layer (first seed of each arm; unpruned "
            + " / ".join(str(full[k]) for k in keys) + "):", "",
            *md_lines(["method", *(k.replace("blocks.", "b") for k in keys)], table,
                      "l" + "r" * len(keys))]


@functools.lru_cache(maxsize=64)
def _layer_macs(widths: tuple[tuple[str, int], ...]) -> dict[str, int]:
    """Per-layer MACs of the fast family at these widths (one forward pass of a fresh net)."""
    spec = search_spaces.default_spec(FAMILY).with_widths(dict(widths))
    return pruning.layer_macs(search_spaces.build(spec), spec.input_shape)


def _macs_table(at: list[Row]) -> list[str]:
    """Where each arm's MACs sit: per-layer MACs of the headline entropic arm, the lowered-lr
    Torch-Pruning arms and uniform, one row per seed, and each layer's MACs against the
    uniform net's (the net every arm is compared with at equal total MACs)."""
    base = _layer_macs(tuple(search_spaces.default_spec(FAMILY).widths.items()))
    keys = [k for k in base if base[k] >= 0.001 * sum(base.values())]  # the head: ~0 MACs
    per_seed = {kind: [(r["seed"], _layer_macs(tuple(r["widths"].items()))) for r in rs]
                for kind in MACS_ARMS if (rs := _with_widths(at, kind))}
    if HEADLINE not in per_seed or "uniform" not in per_seed:
        return []
    uni = dict(per_seed["uniform"])
    table: list[list[Any]] = [["unpruned", None, *(f"{base[k] / 1e6:.1f}" for k in keys),
                               f"{sum(base.values()) / 1e6:.1f}", "–"]]
    for kind, seeds in per_seed.items():
        for seed, lm in seeds:
            ref = uni.get(seed, next(iter(uni.values())))
            off = sum(abs(lm[k] - ref[k]) for k in ref) / 2 / sum(ref.values())
            table.append([LABELS[kind], seed, *(
                f"{lm[k] / 1e6:.1f}" + ("" if kind == "uniform" else f" (x{lm[k] / ref[k]:.2f})")
                for k in keys), f"{sum(lm.values()) / 1e6:.1f}", f"{100 * off:.1f} %"])
    return ["", "MACs per layer, M (in brackets: against the uniform net's layer, same seed); "
            "'off uniform' = the share of the MACs placed differently from the uniform net "
            "(half the L1 distance between the two per-layer MACs vectors, over uniform's total):",
            "", *md_lines(["method", "seed", *(k.replace("blocks.", "b") for k in keys), "total",
                           "off uniform"], table, "l" + "r" * (len(keys) + 3))]
def plot(data: dict[str, Any], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(data.get("rows", {}).values())
    fig = Figure(figsize=(9.6, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    styles = {"base": ("*", "k"), "entropic": ("o", "C0"), "entropic_budget": ("P", "C5"),
              "tp_magnitude": ("s", "C1"), "tp_taylor": ("D", "C2"), "uniform": ("^", "C3"),
              "scratch_b": ("v", "C4"), "scratch_e": ("<", "C6"),
              "entropic_budget_long": ("X", "C7"), "entropic_budget_lowlr": ("h", "C8"),
              "tp_magnitude_lowlr": ("s", "C9"), "tp_taylor_lowlr": ("d", "navy")}
    # the arms at one MACs point sit within 1 % of each other: a small fixed offset per arm
    # keeps their error bars apart (the x position is the arm's mean MACs +- 1.8 M)
    offsets = {k: 0.3 * (i - len(styles) / 2) for i, k in enumerate(styles)}
    # the arms fine-tuned as the config does (lowered lr) and the from-scratch ones stand out;
    # the recipe-lr fine-tunes, superseded, are drawn faint
    faint = {"entropic", "entropic_budget", "tp_magnitude", "tp_taylor", "entropic_budget_long"}
    for kind, rs in _arms(rows, styles):
        groups = [[r for r in rs if r.get("ratio") == ratio]  # the arm's rows per point
                  for ratio in dict.fromkeys(r.get("ratio") for r in rs)]
        xs = [mean([r["macs"] for r in g]) / 1e6 + (offsets[kind] if g[0].get("ratio") else 0)
              for g in groups]
        acc = [mean_std([r["test_acc_tta"] for r in g]) for g in groups]
        marker, color = styles[kind]
        ax.errorbar(xs, [100 * m for m, _, _ in acc], yerr=[100 * sd for _, sd, _ in acc],
                    fmt=marker, color=color, capsize=3, ms=7, alpha=0.35 if kind in faint else 1.0,
                    label=LABELS.get(kind, "unpruned base")
                    + (" (1 seed)" if len(rs) == len(groups) else ""))
    ax.set(xlabel="MACs per image (M)", ylabel="test accuracy, TTA (%)",
           title="CIFAR-10 (JPEG copy), airbench_cifar")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5),
              title="mean ± std over base seeds", title_fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def render(runs: dict[str, dict[str, Any]], figdir: Path | None = None) -> str:
    data = runs.get("cifar_fast.json")
    if data is None:
        return ""
    plot(data, (figdir or ROOT / "docs" / "figures") / Path(FIGURE).name)
    return ("## CIFAR-10 (JPEG copy) at the field's accuracy: the fast family head-to-head\n\n"
            "`python -m benchmarks.cifar_fast --seeds 0 1` (resumable; "
            "benchmarks/results/cifar_fast.json). The base is `airbench_cifar` trained with "
            "`TrainConfig.from_recipe(\"airbench\")`; every pruned arm is fine-tuned with the "
            "same recipe for the same epochs; the uniform net trains from scratch for the "
            "base's epochs, Scratch-B for the base's compute.\n\n"
            "Summary (the README's table; test % with TTA, mean ± std over base seeds; the last "
            "column compares on the seeds both arms ran, by the noise rule):\n\n"
            + summary_markdown(data) + "\nIn full:\n\n" + render_markdown(data) +
            f"\n![accuracy vs MACs](./{FIGURE})\n")
