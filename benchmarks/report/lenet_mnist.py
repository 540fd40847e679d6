"""docs/results.md section of ``benchmarks.lenet_mnist``: tables, target checks, figures, headline."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.report.fmt import (
    NOISE_FLOOR_PT,
    SERIES_SELECTION,
    env_lines,
    fmt_eps,
    fmt_ms,
    fmt_num,
    md_table,
    mean_std,
    noise_gap,
    widths_key,
    widths_str,
)


class Lenet:
    """Index of the rows of a lenet_mnist.json."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.rows = data.get("rows", [])
        self.base = {r["seed"]: r for r in self.rows if r["kind"] == "pretrain"}
        self.ent = [r for r in self.rows if r["kind"] == "entropic"]
        self.by_width: dict[tuple[str, int, str], dict[str, Any]] = {}
        for r in self.rows:
            if r["kind"] not in ("pretrain", "entropic"):
                key = r.get("target_widths", r["widths"]) if r["kind"] == "uniform" else r["widths"]
                self.by_width[(r["kind"], r["seed"], widths_key(key))] = r
        self.points = sorted({(r["eps_E"], r["eps_L2"]) for r in self.ent},
                             key=lambda p: (-p[0], p[1]))
        self.seeds = sorted(self.base)

    def at(self, point: tuple[float, float]) -> list[dict[str, Any]]:
        return sorted((r for r in self.ent if (r["eps_E"], r["eps_L2"]) == point),
                      key=lambda r: r["seed"])

    def partner(self, kind: str, ent_row: dict[str, Any]) -> dict[str, Any] | None:
        if kind == "entropic":
            return ent_row
        return self.by_width.get((kind, ent_row["seed"], widths_key(ent_row["widths"])))

    def series(self, kind: str, point: tuple[float, float], field: str) -> list[float | None]:
        out = []
        for r in self.at(point):
            p = self.partner(kind, r)
            out.append(None if p is None else p.get(field))
        return out

    def delta(self, kind: str, point: tuple[float, float], field: str) -> list[float | None]:
        """Per-seed accuracy minus the same seed's base accuracy (pt)."""
        out: list[float | None] = []
        for r in self.at(point):
            p = self.partner(kind, r)
            b = self.base.get(r["seed"])
            if p is None or b is None or p.get(field) is None:
                out.append(None)
            else:
                out.append(p[field] - b["acc"])
        return out


def _verdict(pruned: Sequence[float | None], others: Mapping[str, Sequence[float | None]]) -> str:
    """Plain-language comparison of pruned+FT5 with the scratch / uniform series."""
    if mean_std(pruned)[2] == 0:
        return "–"
    parts = []
    for name, vals in others.items():
        gap = noise_gap(vals, pruned)
        if gap is None:
            parts.append(f"{name} n/a")
            continue
        d, noise, _ = gap
        if abs(d) <= noise:
            word = "≈"
        elif d > 0:
            word = "better"
        else:
            word = "worse"
        parts.append(f"{name} {word} ({d:+.2f})")
    scratch = [p for p in parts if p.startswith("Scratch")]
    head = ""
    if scratch and all("better" in p or "≈" in p for p in scratch):
        head = "scratch matches/beats pruning; "
    elif scratch and all("worse" in p for p in scratch):
        head = "pruning beats scratch; "
    return head + "; ".join(parts)


def render_lenet(data: dict[str, Any], figdir: Path, docs: Path, name: str
                 ) -> tuple[str, str]:
    L = Lenet(data)
    out: list[str] = []
    prot = data.get("protocol", {})
    env = data.get("env", {})
    title = data.get("title", name)
    out.append(f"## {title}\n")
    out.append(f"Source: `benchmarks/results/{name}`"
               + (" (**quick smoke run**, not a result)" if data.get("quick") else "")
               + f"; seeds {L.seeds}; {len(data.get('rows', []))} rows.\n")
    runs = data.get("runs", [])
    if runs:
        cmd = runs[0].get("command") or "benchmarks/lenet_mnist.py " + " ".join(runs[0].get("argv", []))
        out.append(f"Command: `{cmd}`\n")

    # protocol
    out.append("### Protocol\n")
    for key in ("dataset", "split", "pretrain", "finetune", "calib_images", "sparsify",
                "baselines", "scratch", "uniform", "metric", "conventions"):
        if key in prot:
            val = prot[key]
            if isinstance(val, dict):
                val = ", ".join(f"{k}={fmt_num(x) if not isinstance(x, str) else x}"
                                for k, x in val.items())
            out.append(f"- **{key}**: {val}")
    out.append("")
    out.append(env_lines(env, runs))

    # base models
    out.append("### Base model (LeNet-5, unpruned)\n")
    b = list(L.base.values())
    out.append(md_table(
        ["seeds", "test acc %", "val acc %", "params", "MACs / image", "fp32 MiB",
         "pre-train wall s (8 ep)"],
        [[len(b), fmt_ms([r["acc"] for r in b]), fmt_ms([r["val_acc"] for r in b]),
          fmt_num(b[0]["params"]) if b else "–", fmt_num(b[0]["macs"]) if b else "–",
          f"{b[0]['fp32_mib']:.4f}" if b else "–",
          fmt_ms([r.get("seconds_train") for r in b], 0)]]))
    out.append("")

    # operating points
    out.append("### Entropic operating points\n")
    out.append("Accuracy = test accuracy in %; Δ = minus the same seed's unpruned model, in "
               "points (mean ± std over seeds). FT1 / FT5 = separate 1- and 5-epoch fine-tunes "
               "(lr 0.01 cosine) from the pruned weights. Widths = (conv1, conv2, fc1, fc2) "
               "outputs; MACs per image (FLOPs = 2 × MACs).\n")
    rows = []
    for p in L.points:
        rs = L.at(p)
        ws = sorted({widths_str(r["widths"]) for r in rs})
        flags = sum(bool(r.get("gap_flags")) for r in rs)
        rows.append([
            fmt_eps(p[0]), fmt_eps(p[1]), " ".join(ws), fmt_ms([r["sparsity"] for r in rs], 1, 100),
            fmt_ms([r["prunable_params"] for r in rs], 0), fmt_ms([r["macs"] for r in rs], 0),
            fmt_ms([r["fp32_mib"] for r in rs], 4),
            fmt_ms(L.series("entropic", p, "acc_pruned")),
            fmt_ms(L.series("entropic", p, "acc_ft1")), fmt_ms(L.series("entropic", p, "acc_ft5")),
            fmt_ms(L.delta("entropic", p, "acc_pruned"), 2, signed=True),
            fmt_ms(L.delta("entropic", p, "acc_ft1"), 2, signed=True),
            fmt_ms(L.delta("entropic", p, "acc_ft5"), 2, signed=True),
            f"{flags}/{len(rs)}", fmt_ms([r.get("seconds_prune") for r in rs], 1),
        ])
    out.append(md_table(["eps_E", "eps_L2", "widths (per seed)", "sparsity %", "params",
                         "MACs", "fp32 MiB", "acc pruned", "acc FT1", "acc FT5", "Δ pruned",
                         "Δ FT1", "Δ FT5", "gap<10 runs", "sparsify s"], rows))
    out.append("")

    # selection comparison
    out.append("### Channel selection at equal widths (entropic vs L1 vs random)\n")
    out.append("Each baseline keeps exactly the entropic run's per-layer widths (same seed); "
               "'+ refit' = the same least-squares refit on the same 2,048 calibration images. "
               "'wins' = seeds where entropic is strictly higher right after pruning than "
               "L1 + refit.\n")
    for stage, field in (("right after pruning", "acc_pruned"), ("after 1 fine-tune epoch", "acc_ft1"),
                         ("after 5 fine-tune epochs", "acc_ft5")):
        rows = []
        for p in L.points:
            rs = L.at(p)
            line = [fmt_eps(p[0]), fmt_eps(p[1]), fmt_ms([r["sparsity"] for r in rs], 1, 100)]
            for kind, _ in SERIES_SELECTION:
                line.append(fmt_ms(L.series(kind, p, field)))
            e = L.series("entropic", p, field)
            l1r = L.series("l1_refit", p, field)
            diffs = [a - c for a, c in zip(e, l1r, strict=False) if a is not None and c is not None]
            line.append(fmt_ms(diffs, 2, signed=True))
            if field == "acc_pruned":
                line.append(f"{sum(d > 0 for d in diffs)}/{len(diffs)}")
            rows.append(line)
        hdr = ["eps_E", "eps_L2", "sparsity %"] + [lbl for _, lbl in SERIES_SELECTION] + \
              ["entropic − L1+refit"] + (["wins"] if field == "acc_pruned" else [])
        out.append(f"**{stage}** (test acc %)\n")
        out.append(md_table(hdr, rows))
        out.append("")

    # hypothesis
    out.append("### Pruning as architecture search: pruned + fine-tuned vs scratch vs uniform\n")
    out.append("Pruned+FT5 = entropic pruning + 5 fine-tune epochs. Scratch-E / Scratch-B = the "
               "found widths trained from a fresh init for 8 / ceil(8 / MACs ratio) epochs (cap "
               "in the protocol); uniform = all widths scaled by one factor to the nearest MACs, "
               "8 epochs. Verdict rule: a difference of means counts when it exceeds both "
               f"sqrt(std1² + std2²) and {NOISE_FLOOR_PT} pt, else '≈'.\n")
    rows = []
    for p in L.points:
        rs = L.at(p)
        pr = L.series("entropic", p, "acc_ft5")
        se = L.series("scratch_E", p, "acc")
        sb = L.series("scratch_B", p, "acc")
        un = L.series("uniform", p, "acc")
        sb_ep = L.series("scratch_B", p, "epochs")
        un_w = sorted({widths_str(u["widths"]) for r in rs
                       if (u := L.partner("uniform", r)) is not None})
        un_macs = L.series("uniform", p, "macs")
        un_par = L.series("uniform", p, "prunable_params")
        found_par = [r["prunable_params"] for r in rs]
        rows.append([
            fmt_eps(p[0]), fmt_eps(p[1]), " ".join(sorted({widths_str(r["widths"]) for r in rs})),
            fmt_ms([r["macs"] for r in rs], 0), fmt_ms(pr), fmt_ms(se),
            fmt_ms(sb) + (f" ({fmt_ms(sb_ep, 0)} ep)" if any(v is not None for v in sb_ep) else ""),
            fmt_ms(un) + (f" {' '.join(un_w)}, {fmt_ms(un_macs, 0)} MACs" if un_w else ""),
            f"{fmt_ms(found_par, 0)} / {fmt_ms(un_par, 0)}",
            _verdict(pr, {"Scratch-E": se, "Scratch-B": sb, "uniform": un}),
        ])
    out.append(md_table(["eps_E", "eps_L2", "found widths", "MACs", "pruned+FT5", "Scratch-E",
                         "Scratch-B", "uniform (widths, MACs)", "params found / uniform",
                         "verdict (vs pruned+FT5)"], rows))
    out.append("")

    # targets
    t_md, headline_checks = _targets(L, data.get("targets") or {})
    out.append(t_md)

    # per-layer diagnostics
    out.append("### Per-layer solver diagnostics (entropic runs)\n")
    out.append("kept/total input channels, gap = min kept w / max dropped w (flag < 10), "
               "held-out relative reconstruction error of the layer output, fitting samples T "
               "vs features d. Mean over seeds where they differ.\n")
    rows = []
    for p in L.points:
        rs = L.at(p)
        layers = defaultdict(list)
        for r in rs:
            for li in r.get("layers", []):
                layers[li["layer"]].append(li)
        cells = []
        for lname in ("conv2", "fc1", "fc2", "fc3"):
            ls = layers.get(lname, [])
            if not ls:
                cells.append("–")
                continue
            kept = sorted({f"{li['kept']}/{li['total']}" for li in ls})
            gaps = [li.get("gap") for li in ls if li.get("gap") is not None]
            gmin = min(gaps) if gaps else None
            err = mean_std([li.get("rel_error_heldout") for li in ls])[0]
            cells.append(f"{' '.join(kept)}; gap≥{fmt_num(gmin, 2)}; err {err:.3g}; "
                         f"T={ls[0].get('samples')}/d={ls[0].get('features')}"
                         + ("" if all(li.get("converged", True) for li in ls) else "; NOT converged"))
        rows.append([fmt_eps(p[0]), fmt_eps(p[1])] + cells)
    out.append(md_table(["eps_E", "eps_L2", "conv2 (reads conv1)", "fc1 (reads conv2)",
                         "fc2 (reads fc1)", "fc3 (reads fc2)"], rows))
    out.append("")

    notes = data.get("notes") or []
    if notes:
        out.append("### Notes recorded by the benchmark\n")
        out.extend(f"- {n}" for n in notes)
        out.append("")

    # timing
    out.append("### Wall time per piece\n")
    tim = defaultdict(list)
    for r in data.get("rows", []):
        tim[r["kind"]].append(r.get("seconds_total"))
    out.append(md_table(["piece", "rows", "wall s per row", "total wall s"],
                        [[k, len(v), fmt_ms(v, 0), f"{sum(x for x in v if x):.0f}"]
                         for k, v in sorted(tim.items())]))
    walls = [r.get("wall_seconds") for r in runs if r.get("wall_seconds")]
    if walls:
        out.append(f"\nBenchmark invocations: {len(runs)}, wall time {sum(walls) / 3600:.2f} h "
                   f"in total ({env.get('processes', '?')} worker processes × "
                   f"{env.get('torch_threads_per_process', '?')} torch thread).\n")

    # figures
    figs = _lenet_figures(L, figdir, name.replace(".json", ""))
    for f in figs:
        out.append(f"![{f.stem}]({f.relative_to(docs).as_posix()})\n")
    headline = _lenet_headline(L, headline_checks, name)
    return "\n".join(out), headline


def _targets(L: Lenet, targets: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    out = ["### Targets checked\n"]
    checks: dict[str, Any] = {}
    if not targets:
        out.append("(no targets recorded in the JSON)\n")
        return "\n".join(out), checks
    proto = targets.get("prototype", {})
    if proto.get("points"):
        out.append(f"**Prototype reference (the method spec's prototype run, 1 seed, base "
                   f"{proto.get('base_acc')} %)** vs this run (mean ± std over seeds):\n")
        rows = []
        for tp in proto["points"]:
            p = (tp["eps_E"], tp["eps_L2"])
            rs = L.at(p)
            rows.append([fmt_eps(p[0]), fmt_eps(p[1]), widths_str(tp["widths"]),
                         " ".join(sorted({widths_str(r["widths"]) for r in rs})) or "–",
                         f"{100 * tp['sparsity']:.1f}", fmt_ms([r["sparsity"] for r in rs], 1, 100),
                         f"{tp['acc_pruned']:.2f}", fmt_ms(L.series("entropic", p, "acc_pruned")),
                         f"{tp['acc_ft1']:.2f}", fmt_ms(L.series("entropic", p, "acc_ft1")),
                         f"{tp['acc_ft1'] - proto['base_acc']:+.2f}",
                         fmt_ms(L.delta("entropic", p, "acc_ft1"), 2, signed=True)])
        out.append(md_table(["eps_E", "eps_L2", "widths proto", "widths here", "sparsity % proto",
                             "sparsity % here", "pruned proto", "pruned here", "FT1 proto",
                             "FT1 here", "Δ FT1 proto", "Δ FT1 here"], rows))
        out.append("")

    def best_at(max_loss: float, field: str) -> tuple[tuple[float, float] | None, float, float]:
        best: tuple[tuple[float, float] | None, float, float] = (None, math.nan, math.nan)
        for p in L.points:
            d = mean_std(L.delta("entropic", p, field))
            s = mean_std([r["sparsity"] for r in L.at(p)])
            if d[2] and d[0] >= -max_loss and (best[0] is None or s[0] > best[1]):
                best = (p, s[0], d[0])
        return best

    lines = []
    for label, spec in (("paper", targets.get("paper")), ("issue", targets.get("issue"))):
        if not spec:
            continue
        want_s, max_loss = spec["sparsity"], spec["max_loss_pt"]
        res = {}
        for field, _stage in (("acc_pruned", "right after pruning"), ("acc_ft1", "after FT1"),
                             ("acc_ft5", "after FT5")):
            res[field] = best_at(max_loss, field)
        p5, s5, d5 = res["acc_ft5"]
        met = p5 is not None and s5 >= want_s
        # per seed: does any operating point meet sparsity and loss for that seed alone?
        per_seed = {}
        for seed in L.seeds:
            ok = []
            for p in L.points:
                for r in L.at(p):
                    if r["seed"] != seed or r.get("acc_ft5") is None:
                        continue
                    dd = r["acc_ft5"] - L.base[seed]["acc"]
                    if r["sparsity"] >= want_s and dd >= -max_loss:
                        ok.append(p)
            per_seed[seed] = ok
        n_ok = sum(bool(v) for v in per_seed.values())
        checks[label] = {"met": met, "point": p5, "sparsity": s5, "delta": d5, "spec": spec,
                         "seeds_ok": n_ok, "seeds": len(per_seed)}
        detail = "; ".join(
            f"{stage}: {100 * s:.1f} % at Δ {d:+.2f} pt (eps_E={fmt_eps(p[0])}, eps_L2={fmt_eps(p[1])})"
            if p is not None else f"{stage}: no point within the loss budget"
            for (field, stage), (p, s, d) in zip(
                (("acc_pruned", "right after pruning"), ("acc_ft1", "after FT1"),
                 ("acc_ft5", "after FT5")), res.values(), strict=False))
        lines.append(f"- **{label}** ({spec.get('text', '')}): highest mean sparsity with mean "
                     f"loss ≤ {max_loss} pt — {detail}. **{'MET' if met else 'NOT MET'}** "
                     f"on the seed mean (≥ {100 * want_s:.0f} % needed, judged after ≤ 5 "
                     f"fine-tune epochs); seeds meeting it on their own at some grid point: "
                     f"{n_ok}/{len(per_seed)}.")
    # entropic vs L1 + refit right after pruning at every width
    wins = total = 0
    worst: tuple[float, tuple[float, float]] | None = None
    for p in L.points:
        e = L.series("entropic", p, "acc_pruned")
        l1r = L.series("l1_refit", p, "acc_pruned")
        for a, c in zip(e, l1r, strict=False):
            if a is None or c is None:
                continue
            total += 1
            wins += a > c
            if worst is None or a - c < worst[0]:
                worst = (a - c, p)
    if total:
        assert worst is not None
        checks["beats_l1_refit"] = {"wins": wins, "total": total, "worst": worst}
        lines.append(f"- **issue, selection**: entropic higher than L1 + same refit right after "
                     f"pruning in {wins}/{total} (seed, operating point) pairs; worst margin "
                     f"{worst[0]:+.2f} pt at eps_E={fmt_eps(worst[1][0])}, "
                     f"eps_L2={fmt_eps(worst[1][1])}. **{'MET' if wins == total else 'NOT MET'}**.")
    out.extend(lines)
    out.append("")
    return "\n".join(out), checks


def _lenet_headline(L: Lenet, checks: dict[str, Any], name: str) -> str:
    lines = ["| eps_E | eps_L2 | widths | sparsity % | MACs | acc pruned | acc FT1 | acc FT5 "
             "| Δ FT5 (pt) | vs L1+refit, pruned (pt) | Scratch-E |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    b = list(L.base.values())
    lines.insert(0, "")
    head = [f"LeNet-5 / MNIST, {len(L.seeds)} seeds (mean ± std), test accuracy %; unpruned "
            f"{fmt_ms([r['acc'] for r in b])} % with {fmt_num(b[0]['prunable_params']) if b else '?'} "
            f"params and {fmt_num(b[0]['macs']) if b else '?'} MACs. Sparsity = removed conv+linear "
            "weights incl. biases; MACs per image (FLOPs = 2 × MACs). Full tables: "
            "docs/results.md; source: benchmarks/results/" + name + "."]
    pts = [p for p in L.points if p[0] == -1e-3] or L.points
    for p in pts:
        rs = L.at(p)
        e = L.series("entropic", p, "acc_pruned")
        l1r = L.series("l1_refit", p, "acc_pruned")
        diffs = [a - c for a, c in zip(e, l1r, strict=False) if a is not None and c is not None]
        lines.append("| " + " | ".join([
            fmt_eps(p[0]), fmt_eps(p[1]), " ".join(sorted({widths_str(r["widths"]) for r in rs})),
            fmt_ms([r["sparsity"] for r in rs], 1, 100), fmt_ms([r["macs"] for r in rs], 0),
            fmt_ms(e), fmt_ms(L.series("entropic", p, "acc_ft1")),
            fmt_ms(L.series("entropic", p, "acc_ft5")),
            fmt_ms(L.delta("entropic", p, "acc_ft5"), 2, signed=True),
            fmt_ms(diffs, 2, signed=True), fmt_ms(L.series("scratch_E", p, "acc")),
        ]) + " |")
    tail = []
    for label in ("paper", "issue"):
        c = checks.get(label)
        if c:
            tail.append(f"- {label} target ({100 * c['spec']['sparsity']:.0f} % at ≤ "
                        f"{c['spec']['max_loss_pt']} pt): **{'met' if c['met'] else 'not met'}** — "
                        f"best {100 * c['sparsity']:.1f} % at Δ {c['delta']:+.2f} pt after FT5 "
                        f"(seed mean; {c['seeds_ok']}/{c['seeds']} seeds meet it individually)"
                        if c["point"] is not None else
                        f"- {label} target: **not met** (no operating point within the loss budget)")
    c = checks.get("beats_l1_refit")
    if c:
        tail.append(f"- entropic > L1 + same refit right after pruning: {c['wins']}/{c['total']} "
                    f"(seed, operating point) pairs")
    return "\n".join(head + lines + [""] + tail) + "\n"


def _lenet_figures(L: Lenet, figdir: Path, stem: str) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    figdir.mkdir(parents=True, exist_ok=True)
    paths = []

    # 1. accuracy vs MACs and vs parameters: pruned+FT5, Scratch-E, Scratch-B, uniform
    fig, axes_ = plt.subplots(1, 2, figsize=(13, 4.5))
    series = [("entropic", "acc_ft5", "pruned + FT5", "o"), ("scratch_E", "acc", "Scratch-E", "s"),
              ("scratch_B", "acc", "Scratch-B", "^"), ("uniform", "acc", "uniform (equal MACs)", "D")]
    b = list(L.base.values())
    for ax, xfield, xlabel, logx in (
            (axes_[0], "macs", "MACs per image (conv + linear; FLOPs = 2 × MACs)", False),
            (axes_[1], "prunable_params", "parameters of conv + linear layers (log scale)", True)):
        for kind, field, label, marker in series:
            xs, ys, es = [], [], []
            for p in L.points:
                xv = L.series(kind, p, xfield)
                acc = L.series(kind, p, field)
                mx, _, n = mean_std(xv)
                my, sy, n2 = mean_std(acc)
                if n and n2:
                    xs.append(mx)
                    ys.append(my)
                    es.append(sy)
            if xs:
                order = sorted(range(len(xs)), key=lambda i: xs[i])
                ax.errorbar([xs[i] for i in order], [ys[i] for i in order],
                            yerr=[es[i] for i in order], marker=marker,
                            linestyle="-" if kind == "entropic" else ":",
                            capsize=3, label=label, alpha=0.85)
        if b:
            bx = b[0].get(xfield, b[0].get("params"))
            ax.errorbar([bx], [mean_std([r["acc"] for r in b])[0]],
                        yerr=[mean_std([r["acc"] for r in b])[1]], marker="*", markersize=12,
                        color="k", label="unpruned", linestyle="none")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        _clip_y(ax, [r["acc"] for r in b])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes_[0].set_title(f"LeNet-5 / MNIST: accuracy vs MACs ({len(L.seeds)} seeds, mean ± std)")
    axes_[1].set_title("the same runs against parameters")
    fig.tight_layout()
    fig_path = figdir / f"{stem}_acc_vs_macs.png"
    fig.savefig(fig_path, dpi=130)
    plt.close(fig)
    paths.append(fig_path)

    # 2. sparsity vs accuracy: entropic vs L1 vs random (with / without refit), 3 stages
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharex=True)
    for ax, (field, stage) in zip(axes, (("acc_pruned", "right after pruning"),
                                         ("acc_ft1", "after 1 fine-tune epoch"),
                                         ("acc_ft5", "after 5 fine-tune epochs")),
                                strict=False):
        for kind, label in SERIES_SELECTION:
            pts = []
            for p in L.points:
                for r in L.at(p):
                    q = L.partner(kind, r)
                    if q is not None and q.get(field) is not None:
                        pts.append((100 * r["sparsity"], q[field]))
            if pts:
                ax.scatter([x for x, _ in pts], [y for _, y in pts], label=label, s=18,
                           alpha=0.75, marker="o" if kind == "entropic" else
                           ("x" if "refit" in kind else "."))
        ax.set_title(stage)
        ax.set_xlabel("parameter sparsity (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle("LeNet-5 / MNIST: channel selection at equal widths (every seed and point)")
    fig.tight_layout()
    fig_path = figdir / f"{stem}_selection.png"
    fig.savefig(fig_path, dpi=130)
    plt.close(fig)
    paths.append(fig_path)

    # 3. zoom: the same after FT, restricted to the top of the accuracy range
    return paths


def _clip_y(ax: Any, base: list[float]) -> None:
    lo, hi = ax.get_ylim()
    if base:
        top = max(base)
        ax.set_ylim(max(lo, top - 6.0), min(100.0, max(hi, top + 0.3)))
