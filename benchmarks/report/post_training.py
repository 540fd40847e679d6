"""The post-training section: the budgeted pass, then each recovery step at its step budget,
the learning rate picked on validation, test accuracy (with TTA) of the pick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report.fmt import md_table


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def pick_rows(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (seed, ratio): the pass, then per mode the row with the best val accuracy (plain)."""
    out: list[dict[str, Any]] = []
    passes = sorted((r for r in rows.values() if r.get("kind") == "pass"),
                    key=lambda r: (r["seed"], -r["ratio"]))
    for p in passes:
        out.append({**p, "arm": "pass only (no gradient step)", "lr_grid": None})
        same = [r for r in rows.values()
                if r.get("kind") != "pass" and r["seed"] == p["seed"] and r["ratio"] == p["ratio"]]
        for mode, label in (("bn", "+ BatchNorm recalibration"),
                            ("distill", "+ label-free distillation"),
                            ("finetune", "+ labelled fine-tune")):
            cands = [r for r in same if r["kind"] == mode]
            if not cands:
                continue
            best = max(cands, key=lambda r: (r["val_acc"], -r["lr"]))
            grid = sorted(r["lr"] for r in cands) if mode != "bn" else None
            out.append({**best, "arm": label, "lr_grid": grid})
    return out


def render(runs: dict[str, dict[str, Any]], figdir: Path | None = None) -> str:
    parts = ["## Pruning without retraining (fast family)\n",
             "Source: `benchmarks/results/post_training.json` "
             "(`python -m benchmarks.post_training`). The budgeted entropic pass "
             "(`target_macs`, 2,048 calibration images), then each recovery step of "
             "`nas.recovery` for the step budget in the settings (22 steps = a quarter epoch at "
             "batch 512; SGD momentum 0.9, cosine to 0, no guard), its learning rate picked "
             "on the validation split (plain accuracy); the test split (with flip + translate "
             "TTA) is read for every row but only the pick is reported here.\n"]
    for name, data in sorted(runs.items()):
        s = data.get("settings", {})
        rows = data.get("rows", {})
        table = []
        for r in pick_rows(rows):
            grid = "" if not r["lr_grid"] else (
                f"{r['lr']:g} (of {', '.join(f'{v:g}' for v in r['lr_grid'])})")
            secs = r.get("pass_s") if r["kind"] == "pass" else r.get("recover_s")
            table.append([f"s{r['seed']}", f"x{r['ratio']:g}", r["arm"], grid or "–",
                          _pct(r.get("val_acc")), _pct(r.get("test_acc_tta")),
                          "–" if secs is None else f"{secs:.0f}"])
        parts.append(f"`{name}`: {s.get('steps')} steps, {s.get('calib_images')} calibration "
                     f"images, {s.get('threads')} torch threads.\n")
        parts.append(md_table(["base", "MACs", "arm", "lr (picked on val)", "val %",
                               "test % (TTA)", "seconds"], table))
    return "\n".join(parts) + "\n"
