"""The post-training section: the budgeted pass, then each recovery step at its step budget,
the learning rate picked on validation, test accuracy (with TTA) of the pick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report.fmt import md_table, pct

Row = dict[str, Any]
ARM_LABELS = {  # every arm, in the order of the tables
    "entropic": "entropic (budgeted pass)",
    "greedy": "greedy reconstruction (El Halabi 2022), same widths + refit",
    "lasso": "LASSO (He 2017), same widths + refit",
    "entropic_final": "entropic re-solved in the final pass, same widths + refit",
    "greedy_plan": "greedy plan + greedy selection (no entropic term) + refit",
    "greedy_plan_rank": "greedy plan, its own ranking kept (no reselection) + refit",
    "l1_uniform": "uniform widths, L1 filters (Li 2017) + refit",
    "tp_taylor": "Torch-Pruning GroupTaylor (global)",
    "tp_magnitude": "Torch-Pruning GroupMagnitude (global)",
    "mo_fastnas": "modelopt FastNAS (its score: labelled calibration accuracy)",
}
RANK = {arm: i for i, arm in enumerate(ARM_LABELS)}  # an arm's place in the tables (unknown: 99)
MODES = (("bn", "+ BN"), ("distill", "+ distill"), ("distill_mse", "+ distill (MSE)"),
         ("finetune", "+ fine-tune"))


def arm_of(row: Row) -> str:
    return str(row.get("arm", "entropic"))  # the first rows predate the arms


def _label(arm: str) -> str:
    return ARM_LABELS.get(arm, arm)


def _opt(d: Row | None, key: str, spec: str) -> str:
    """``d[key]`` formatted with ``spec``, '–' where it is not recorded."""
    return f"{d[key]:{spec}}" if d and key in d else "–"


def _where(name: str, data: dict[str, Any]) -> str:
    """The line naming a results file and the threads and device it was measured with."""
    env = data.get("env", {})
    return f"`{name}`: {env.get('torch_threads', '?')} torch threads, {env.get('device', '?')}.\n"


def pick(cands: list[Row]) -> Row | None:
    """The row with the best val accuracy (ties: the smaller lr)."""
    return max(cands, key=lambda r: (r["val_acc"], -r.get("lr", 0.0))) if cands else None


def pick_rows(rows: dict[str, Row]) -> list[Row]:
    """Per (seed, ratio, arm): the pass row plus, per recovery mode, the pick on val
    (``picks[mode]`` with ``grids[mode]``, the lrs tried)."""
    out: list[Row] = []
    passes = sorted((r for r in rows.values() if r.get("kind") == "pass"),
                    key=lambda r: (r["seed"], -r["ratio"], RANK.get(arm_of(r), 99)))
    for p in passes:
        same = [r for r in rows.values() if r.get("kind") != "pass" and r["seed"] == p["seed"]
                and r["ratio"] == p["ratio"] and arm_of(r) == arm_of(p)]
        picks = {m: pick([r for r in same if r["kind"] == m]) for m, _ in MODES}
        grids = {m: sorted(r["lr"] for r in same if r["kind"] == m) for m, _ in MODES}
        out.append({**p, "arm": arm_of(p), "picks": picks, "grids": grids})
    return out


def _cell(r: Row | None, grid: list[float], show_lr: bool) -> str:
    if r is None:
        return "–"
    return pct(r.get("test_acc_tta")) + (f" (lr {r['lr']:g} of {len(grid)})" if show_lr else "")


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
        table = [[f"s{r['seed']}", f"x{r['ratio']:g}", _label(r["arm"]),
                  f"{100 * r['macs_ratio']:.1f} %" if "macs_ratio" in r else "–",
                  pct(r.get("test_acc_tta")),
                  *(_cell(r["picks"][m], r["grids"][m], m != "bn") for m, _ in MODES),
                  _opt(r, "pass_s", ".0f")] for r in pick_rows(data.get("rows", {}))]
        parts += [f"`{name}`: {s.get('steps')} steps, {s.get('calib_images')} calibration "
                  f"images, {s.get('threads')} torch threads.\n",
                  md_table(["base", "target", "arm", "MACs", "pass only",
                            *(label for _, label in MODES), "pass s"], table)]
    return "\n".join(parts) + "\n"


def render_speed(runs: dict[str, dict[str, Any]], figdir: Path | None = None) -> str:
    """Each arm's pass timed alone (``--speed``): seconds, forward passes, the budget's split."""
    parts = ["## Pass cost, each arm alone (fast family)\n",
             "Source: `benchmarks/results/post_training_speed.json` (`python -m "
             "benchmarks.post_training --speed`): each arm's pass run with nothing else on the "
             "cores; `forward passes` is the pass's seconds over one forward pass of the same "
             "2,048 calibration images timed in the same unit; plan / final are the budgeted "
             "pass's two data passes, `solve` the entropic solves inside them.\n"]
    for name, data in sorted(runs.items()):
        table = [[_label(r["arm"]), f"x{r['ratio']:g}", f"{r['pass_s']:.1f}",
                  f"{r['pass_in_forwards']:.1f}", _opt(r.get("budget_seconds"), "plan_pass", ".1f"),
                  _opt(r.get("budget_seconds"), "final_pass", ".1f"),
                  _opt(r.get("phases_s"), "solve", ".1f"), pct(r.get("val_acc"))]
                 for r in sorted(data.get("rows", {}).values(), key=lambda r: r["pass_s"])]
        parts += [_where(name, data), md_table(["arm", "target", "pass s", "forward passes",
                                                "plan s", "final s", "solve s", "val %"], table)]
    return "\n".join(parts) + "\n"


def _sampling(row: Row) -> str:
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
        largest: dict[tuple[Any, ...], Row] = {}  # per (arm, seed, ratio), plain sampling
        for r in sorted(rows, key=lambda r: -r["images"]):  # most images (ties: the first row)
            if _sampling(r) == "10":
                largest.setdefault((r["arm"], r["seed"], r["ratio"]), r)
        table = []
        for r in sorted(rows, key=lambda r: (r["arm"], r["seed"], r["ratio"], r["images"],
                                             _sampling(r))):
            top = largest.get((r["arm"], r["seed"], r["ratio"]), r)
            gap = 100 * (r["test_acc_tta"] - top["test_acc_tta"])
            table.append([_label(r["arm"]), str(r["seed"]), f"x{r['ratio']:g}",
                          f"{r['images']:,}", _sampling(r), pct(r.get("val_acc")),
                          pct(r.get("test_acc_tta")), "–" if r is top else f"{gap:+.2f}",
                          f"{r['pass_s']:.0f}"])
        parts += [_where(name, data), md_table(
            ["arm", "seed", "target", "images", "sampling, refit", "val %", "test % (TTA)",
             "vs largest (pt)", "pass s"], table)]
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
                      key=lambda r: (r["seed"], -r["ratio"], r["mode"], RANK.get(r["arm"], 99)))
        table = [[f"s{r['seed']}", f"x{r['ratio']:g}", r["mode"], _label(r["arm"]),
                  f"{r['lr']:g} ({r.get('lr_source', '?')})", f"{r['pass_s']:.0f}",
                  str(r["steps"]), f"{r['total_s']:.0f}", pct(r.get("val_acc")),
                  pct(r.get("test_acc_tta"))] for r in rows]
        parts += [_where(name, data), md_table(["base", "target", "recovery", "arm", "lr",
                                                "pass s", "steps", "total s", "val %",
                                                "test % (TTA)"], table)]
    return "\n".join(parts) + "\n"
