"""docs/results.md section of ``benchmarks.budget_hit``: budget hit, pass cost, LeNet-5 arms.

Every full run file of the benchmark is read: ``hit/`` rows (does the pass land on the
target, at what cost), ``pass_cost/`` rows (VGG-16-CIFAR budgeted vs unbudgeted pass) and
the ``acc/`` rows of the fullest file that has them (LeNet-5 / MNIST at x0.5 and x0.3 MACs:
budgeted entropic and its variants against uniform scaling and Torch-Pruning) and the
``params/`` rows (the same arms at a params budget), with
verdicts by the noise rule of the LeNet table: a difference is a tie unless it exceeds
both the seeds' combined standard deviation and 0.05 pt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report.fmt import fmt_ms, md_table, noise_gap

LENET_PARAMS = 61706
LENET_MACS = 416520
ARMS = [  # (kind, label)
    ("entropic_budget", "entropic, budgeted (target_macs), FT5"),
    ("entropic_budget_exp0.5", "entropic, budgeted + cost_exponent 0.5, FT5"),
    ("entropic_budget_exp1", "entropic, budgeted + cost_exponent 1, FT5"),
    ("entropic_budget_output", "entropic, budgeted, output-sensitivity objective, FT5"),
    ("uniform", "uniform, scratch 8 ep"),
    ("uniform_l1_refit_ft5", "uniform, L1 + refit, FT5"),
    ("tp_magnitude", "Torch-Pruning GroupMagnitude (global), FT5"),
    ("tp_taylor", "Torch-Pruning GroupTaylor (global), FT5"),
    ("entropic_at_tp_taylor", "entropic channels + refit at GroupTaylor's widths, FT5"),
]
OURS = "entropic_budget"


def _final(row: dict[str, Any], plain: dict[tuple[int, float], dict[str, Any]]) -> float | None:
    if row.get("identical_to_plain"):
        ref = plain.get((row["seed"], row["target"]))
        return None if ref is None else ref.get("acc_ft5")
    return row.get("acc_ft5", row.get("acc"))


def verdict(ours: list[float], theirs: list[float]) -> str:
    gap = noise_gap(ours, theirs)
    if gap is None:
        return "–"
    d, noise, _ = gap
    word = "≈" if abs(d) <= noise else ("budgeted entropic better" if d > 0 else
                                         "budgeted entropic worse")
    return f"{word} ({d:+.2f} pt)"


def _w(w: dict[str, int]) -> str:
    return "(" + ",".join(str(w[k]) for k in ("conv1", "conv2", "fc1", "fc2")) + ")"


def _acc_table(rows: list[dict[str, Any]], points: tuple[float, ...] = (0.5, 0.3),
               currency: str = "MACs") -> list[str]:
    plain = {(r["seed"], r["target"]): r for r in rows if r["kind"] == OURS}
    out: list[str] = []
    for ratio in points:
        at = [r for r in rows if r.get("target") == ratio]
        ours = [_final(r, plain) for r in sorted(at, key=lambda r: r["seed"]) if r["kind"] == OURS]
        table = []
        for kind, label in ARMS:
            if currency == "params":
                label = label.replace("target_macs", "target_params")
            arm = sorted((r for r in at if r["kind"] == kind), key=lambda r: r["seed"])
            if not arm:
                continue
            finals = [_final(r, plain) for r in arm]
            same = sum(bool(r.get("identical_to_plain")) for r in arm)
            widths = " ".join(_w(r["widths"]) for r in arm)
            if same:
                widths += f" ({same} of {len(arm)}: the plain budgeted network)"
            table.append([
                f"x{ratio:g}", label, len(arm), widths,
                fmt_ms([r.get("macs_ratio", r["macs"] / LENET_MACS) for r in arm], 3),
                fmt_ms([r["params"] / LENET_PARAMS for r in arm], 2),
                fmt_ms([r.get("acc_pruned") for r in arm]),
                "**" + fmt_ms(finals) + "**" if kind == OURS else fmt_ms(finals),
                "–" if kind == OURS else verdict(ours, finals),  # type: ignore[arg-type]
            ])
        out.append(md_table([currency, "arm", "seeds", "widths (conv1,conv2,fc1,fc2) per seed",
                             "MACs ratio", "params ratio", "acc pruned", "acc final",
                             "verdict (budgeted entropic vs arm)"], table))
        out.append("")
    return out


def render(runs: dict[str, dict[str, Any]], figdir: Path | None = None) -> str:
    out = ["## Budget targets and cost-aware pruning (benchmarks/budget_hit.py)\n",
           "`sparsify(..., target_macs= / target_params=)` (pruning/budget.py; design and "
           "discussion in docs/pruning-engine-notes.md). 1 torch thread per process, CPU "
           "shared with other jobs (load averages in the JSON).\n"]
    rows = {name: d.get("rows", []) for name, d in sorted(runs.items())}
    hit = [r for rs in rows.values() for r in rs if r["key"].startswith("hit/")]
    if hit:
        out.append("### Budget hit (best of 3 interleaved budgeted / unbudgeted passes; "
                   "airbench_cifar: one run each)\n")
        out.append(md_table(
            ["model", "target", "reached", "within 2 %", "time vs unbudgeted"],
            [[r["family"], f"{r['metric']} x{r['target_ratio']:g}", f"{r['reached_ratio']:.4f}",
              "yes" if r["within_2pct"] else "no",
              f"x{r['cost_vs_unbudgeted']:.2f}"
              + (" (1 run)" if r.get("timing_runs", 3) == 1 else "")]
             for r in hit]))
        out.append("")
    cost = [r for rs in rows.values() for r in rs if r["key"].startswith("pass_cost/")]
    if cost:
        out.append("### Pass cost on VGG-16-CIFAR (one unbudgeted and one budgeted pass, "
                   "same process)\n")
        out.append(md_table(
            ["model", "calibration", "target", "reached", "unbudgeted s", "budgeted s",
             "plan / allocation / final s", "wall ratio", "CPU s (unbudgeted / budgeted)",
             "CPU ratio", "load average (before each)"],
            [[r["model"], r["calibration"].split(",")[0] + f", {r['key'].rsplit('images', 1)[-1]} images",
              f"macs x{r['target_ratio']:g}", f"{r['reached_ratio']:.4f}",
              f"{r['seconds_unbudgeted']:.0f}", f"{r['seconds_budgeted']:.0f}",
              " / ".join(f"{r['budget_seconds'][k]:.0f}" for k in
                         ("plan_pass", "allocation", "final_pass")),
              f"x{r['cost_vs_unbudgeted']:.2f}",
              (f"{r['cpu_seconds_unbudgeted']:.0f} / {r['cpu_seconds_budgeted']:.0f}"
               if "cpu_seconds_budgeted" in r else "–"),
              (f"**x{r['cpu_seconds_budgeted'] / r['cpu_seconds_unbudgeted']:.2f}**"
               if "cpu_seconds_budgeted" in r else "–"),
              f"{r['load_average_before_unbudgeted'][0]:.1f} / "
              f"{r['load_average_before_budgeted'][0]:.1f}"] for r in cost]))
        notes = sorted({r["cpu_note"] for r in cost if r.get("cpu_note")})
        out.extend([f"CPU seconds: {n}" for n in notes] + [""] if notes else [""])
    cexp = [r for rs in rows.values() for r in rs if r["key"].startswith("cost/")]
    if cexp:
        out.append("### Cost-aware strengths without a budget (LeNet-5 seed 0, MACs currency)\n")
        out.append(md_table(
            ["cost_exponent", "eps_L2", "widths", "MACs ratio", "params ratio", "acc pruned",
             "acc FT1"],
            [[f"{r['exponent']:g}", f"{r['eps_L2']:g}", _w(r["widths"]), f"{r['macs_ratio']:.3f}",
              f"{r['params'] / LENET_PARAMS:.3f}", f"{r['acc_pruned']:.2f}", f"{r['acc_ft1']:.2f}"]
             for r in sorted(cexp, key=lambda r: (r["eps_L2"], r["exponent"]))]))
        out.append("")
    with_acc = [n for n, rs in rows.items() if any(r["key"].startswith("acc/") for r in rs)]
    if with_acc:
        # the fullest file (most acc rows: TP and variant arms are added to one file), the
        # newest of equals; a later run of another part (hit_fast) does not make a file newer
        newest = max(with_acc, key=lambda n: (
            sum(r["key"].startswith("acc/") for r in rows[n]),
            max((r.get("started", "") for r in runs[n].get("runs", [])), default="")))
        acc = [r for r in rows[newest] if r["key"].startswith("acc/")]
        out.append(f"### LeNet-5 / MNIST at x0.5 and x0.3 MACs (`benchmarks/results/{newest}`)\n")
        out.append("8-epoch bases (seeds 0, 1, 2), 2,048 calibration images. Torch-Pruning: "
                   "global pruning to the budgeted entropic arm's MACs (at or under x1.01; "
                   "its last step may land lower). Test accuracy %, mean ± std over the seeds; "
                   "params = ratio of all 61,706 parameters. Verdict: budgeted entropic minus "
                   "the arm, a tie (≈) within max(combined std, 0.05 pt).\n")
        out.extend(_acc_table(acc))
        copied = sorted({r["copied_from"] for r in acc if r.get("copied_from")})
        for c in copied:
            out.append(f"Uniform-scratch rows copied from {c}.\n")
    par = {n: [r for r in rs if r["key"].startswith("params/")] for n, rs in rows.items()}
    par = {n: rs for n, rs in par.items() if rs}
    for name, prs in par.items():
        points = tuple(sorted({r["target"] for r in prs}, reverse=True))
        out.append(f"### LeNet-5 / MNIST at a params budget (`benchmarks/results/{name}`)\n")
        out.append("The same bases and seeds, budget x" + " / x".join(f"{p:g}" for p in points)
                   + " of all 61,706 parameters (`python -m benchmarks.budget_hit --parts "
                   "params`). Torch-Pruning: global pruning to the budgeted entropic arm's "
                   "params (at or under x1.01); uniform: the width factor whose net has the "
                   "entropic arm's params, from scratch for 8 epochs. Same verdict rule.\n")
        out.extend(_acc_table(prs, points, currency="params"))
    return "\n".join(out) + "\n"
