"""The post-training section: the budgeted pass, then each recovery step at its step budget,
the learning rate picked on validation, test accuracy (with TTA) of the pick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report.fmt import md_table


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


ARM_LABELS = {
    "entropic": "entropic (budgeted pass)",
    "greedy": "greedy reconstruction (El Halabi 2022), same widths + refit",
    "lasso": "LASSO (He 2017), same widths + refit",
    "entropic_final": "entropic re-solved in the final pass, same widths + refit",
    "greedy_plan": "greedy plan + greedy selection (no entropic term) + refit",
    "greedy_plan_rank": "greedy plan, its own ranking kept (no reselection) + refit",
    "l1_uniform": "uniform widths, L1 filters (Li 2017) + refit",
    "tp_taylor": "Torch-Pruning GroupTaylor (global)",
    "tp_magnitude": "Torch-Pruning GroupMagnitude (global)",
}
MODES = (("bn", "+ BN"), ("distill", "+ distill"), ("distill_mse", "+ distill (MSE)"),
         ("finetune", "+ fine-tune"))


def arm_of(row: dict[str, Any]) -> str:
    return str(row.get("arm", "entropic"))  # the first rows predate the arms


def pick(cands: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the best val accuracy (ties: the smaller lr)."""
    return max(cands, key=lambda r: (r["val_acc"], -r.get("lr", 0.0))) if cands else None


def pick_rows(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (seed, ratio, arm): the pass row plus, per recovery mode, the pick on val
    (``picks[mode]`` with ``grids[mode]``, the lrs tried)."""
    out: list[dict[str, Any]] = []
    passes = sorted((r for r in rows.values() if r.get("kind") == "pass"),
                    key=lambda r: (r["seed"], -r["ratio"], list(ARM_LABELS).index(arm_of(r))
                                   if arm_of(r) in ARM_LABELS else 99))
    for p in passes:
        same = [r for r in rows.values() if r.get("kind") != "pass" and r["seed"] == p["seed"]
                and r["ratio"] == p["ratio"] and arm_of(r) == arm_of(p)]
        picks = {m: pick([r for r in same if r["kind"] == m]) for m, _ in MODES}
        grids = {m: sorted(r["lr"] for r in same if r["kind"] == m) for m, _ in MODES}
        out.append({**p, "arm": arm_of(p), "picks": picks, "grids": grids})
    return out


def _cell(r: dict[str, Any] | None, grid: list[float], show_lr: bool) -> str:
    if r is None:
        return "–"
    acc = _pct(r.get("test_acc_tta"))
    if show_lr:
        acc += f" (lr {r['lr']:g} of {len(grid)})"
    return acc


def render(runs: dict[str, dict[str, Any]], figdir: Path | None = None) -> str:
    parts = ["## Pruning without retraining (fast family)\n",
             "Source: `benchmarks/results/post_training.json` "
             "(`python -m benchmarks.post_training`). Each arm prunes the trained base to the "
             "same MACs (the entropic budgeted pass's, 2,048 calibration images), then each "
             "recovery step of `nas.recovery` for the step budget in the settings (22 steps = "
             "a quarter epoch at batch 512; SGD momentum 0.9, cosine to 0, no guard), its "
             "learning rate picked per arm on the validation split (plain accuracy) from the "
             "same grid; the cells are test accuracy with flip + translate TTA of the pick "
             "(the test split is read for every row, only the pick is reported). `pass s` is "
             "the pruning's own seconds, measured beside other jobs (the next table has them "
             "alone); a recovery step costs the same in every arm.\n"]
    for name, data in sorted(runs.items()):
        s = data.get("settings", {})
        rows = data.get("rows", {})
        table = []
        for r in pick_rows(rows):
            table.append([f"s{r['seed']}", f"x{r['ratio']:g}",
                          ARM_LABELS.get(r["arm"], r["arm"]),
                          f"{100 * r['macs_ratio']:.1f} %" if "macs_ratio" in r else "–",
                          _pct(r.get("test_acc_tta")),
                          *(_cell(r["picks"][m], r["grids"][m], m != "bn") for m, _ in MODES),
                          f"{r['pass_s']:.0f}" if "pass_s" in r else "–"])
        parts.append(f"`{name}`: {s.get('steps')} steps, {s.get('calib_images')} calibration "
                     f"images, {s.get('threads')} torch threads.\n")
        parts.append(md_table(["base", "target", "arm", "MACs", "pass only",
                               *(label for _, label in MODES), "pass s"], table))
    return "\n".join(parts) + "\n"


def _where(name: str, data: dict[str, Any]) -> str:
    """The line naming a results file and the threads and device it was measured with."""
    env = data.get("env", {})
    return (f"`{name}`: {env.get('torch_threads', '?')} torch threads, "
            f"{env.get('device', '?')}.\n")


def render_speed(runs: dict[str, dict[str, Any]], figdir: Path | None = None) -> str:
    """Each arm's pass timed alone (``--speed``): seconds, forward passes, the budget's split."""
    parts = ["## Pass cost, each arm alone (fast family)\n",
             "Source: `benchmarks/results/post_training_speed.json` (`python -m "
             "benchmarks.post_training --speed`): each arm's pass run with nothing else on the "
             "cores; `forward passes` is the pass's seconds over one forward pass of the same "
             "2,048 calibration images timed in the same unit; plan / final are the budgeted "
             "pass's two data passes, `solve` the entropic solves inside them.\n"]
    for name, data in sorted(runs.items()):
        table = []
        for r in sorted(data.get("rows", {}).values(), key=lambda r: r["pass_s"]):
            b = r.get("budget_seconds") or {}
            ph = r.get("phases_s") or {}
            table.append([ARM_LABELS.get(r["arm"], r["arm"]), f"x{r['ratio']:g}",
                          f"{r['pass_s']:.1f}", f"{r['pass_in_forwards']:.1f}",
                          f"{b['plan_pass']:.1f}" if "plan_pass" in b else "–",
                          f"{b['final_pass']:.1f}" if "final_pass" in b else "–",
                          f"{ph['solve']:.1f}" if "solve" in ph else "–",
                          _pct(r.get("val_acc"))])
        parts.append(_where(name, data))
        parts.append(md_table(["arm", "target", "pass s", "forward passes", "plan s", "final s",
                               "solve s", "val %"], table))
    return "\n".join(parts) + "\n"


def _sampling(row: dict[str, Any]) -> str:
    """Positions per image (raised to k rows per feature where the rule was on) and, where
    chosen on held-out rows, the refit's ridge."""
    text = str(row.get("positions", 10))
    if row.get("rows_per_feature") is not None:
        text += f", >= {row['rows_per_feature']:g} rows/feature"
    if row.get("flip"):
        text += ", + mirror images"
    if row.get("shift"):
        text += f", + shifted {row['shift']} px"
    if row.get("heldout_ridge"):
        text += ", ridge on held-out"
    return text


def render_calib(runs: dict[str, dict[str, Any]], figdir: Path | None = None) -> str:
    """The calibration-set sweep (``--calib-sizes``): accuracy right after the pass and its
    seconds at each number of calibration images, per arm; the gap to the largest set."""
    parts = ["## Calibration-set size (fast family, right after the pass)\n",
             "Source: `benchmarks/results/post_training_calib.json` (`python -m "
             "benchmarks.post_training --calib-sizes 256 1024 4096`): the same pass with N "
             "calibration images (BN recalibrated on them), no gradient step; the gap is to the "
             "largest N of the same arm, seed and budget (target: within 1 pt at 256 of "
             "4,096).\n"]
    for name, data in sorted(runs.items()):
        rows = list(data.get("rows", {}).values())
        largest: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in rows:
            key = (r["arm"], r["seed"], r["ratio"])
            if _sampling(r) == "10" and (key not in largest
                                         or r["images"] > largest[key]["images"]):
                largest[key] = r
        table = []
        for r in sorted(rows, key=lambda r: (r["arm"], r["seed"], r["ratio"], r["images"],
                                             _sampling(r))):
            top = largest.get((r["arm"], r["seed"], r["ratio"]), r)
            gap = 100 * (r["test_acc_tta"] - top["test_acc_tta"])
            table.append([ARM_LABELS.get(r["arm"], r["arm"]), str(r["seed"]),
                          f"x{r['ratio']:g}", f"{r['images']:,}",
                          _sampling(r), _pct(r.get("val_acc")),
                          _pct(r.get("test_acc_tta")),
                          "–" if r is top else f"{gap:+.2f}", f"{r['pass_s']:.0f}"])
        parts.append(_where(name, data))
        parts.append(md_table(["arm", "seed", "target", "images", "sampling, refit", "val %",
                               "test % (TTA)",
                               "vs largest (pt)", "pass s"], table))
    return "\n".join(parts) + "\n"


def render_equal(runs: dict[str, dict[str, Any]], figdir: Path | None = None) -> str:
    """Equal total compute (``--equal-compute``): each arm's pass plus the recovery steps its
    seconds leave, against the entropic pass plus its steps."""
    parts = ["## Equal total compute (fast family)\n",
             "Source: `benchmarks/results/post_training_equal.json` (`python -m "
             "benchmarks.post_training --equal-compute`): each arm prunes to the entropic "
             "pass's MACs, then takes as many recovery steps (at the lr the main grid picked "
             "on val) as leave its pass + steps equal to the entropic pass plus its steps, every "
             "second timed in the same unit; a faster pass buys more steps.\n"]
    for name, data in sorted(runs.items()):
        rows = sorted(data.get("rows", {}).values(),
                      key=lambda r: (r["seed"], -r["ratio"], r["mode"],
                                     list(ARM_LABELS).index(r["arm"])
                                     if r["arm"] in ARM_LABELS else 99))
        table = [[f"s{r['seed']}", f"x{r['ratio']:g}", r["mode"],
                  ARM_LABELS.get(r["arm"], r["arm"]), f"{r['lr']:g} ({r.get('lr_source', '?')})",
                  f"{r['pass_s']:.0f}", str(r["steps"]), f"{r['total_s']:.0f}",
                  _pct(r.get("val_acc")), _pct(r.get("test_acc_tta"))] for r in rows]
        parts.append(_where(name, data))
        parts.append(md_table(["base", "target", "recovery", "arm", "lr", "pass s", "steps",
                               "total s", "val %", "test % (TTA)"], table))
    return "\n".join(parts) + "\n"
