"""docs/results.md section of ``benchmarks.vgg_pass``: one row per whole-VGG-16 pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.report.fmt import md_table


def render(runs: dict[str, dict[str, Any]], figdir: Path | None = None) -> str:
    """One row per whole-VGG-16 sparsify pass (benchmarks/vgg_pass.py; ``runs``: file name ->
    its JSON, ``{"settings", "env", "rows": {variant: row}}``)."""
    out = ["## Engine speed: one whole VGG-16-CIFAR sparsify pass\n",
           "Every consumer layer of VGG-16-CIFAR (13 regressions, d up to 4,608 features), "
           "5,000 CIFAR-10 (JPEG copy) calibration images × 10 sampled positions, eps_L2 = "
           "0.03, untrained network with BN statistics calibrated on the images (the cost does "
           "not depend on the weights; the widths do). Targets: < 300 s on this CPU, "
           "< 20 s on a GPU (no GPU was lent to these sessions). Seconds, wall clock.\n"]
    # one row per pass: a file's name, with the row's key where the file holds several
    passes = {n if len(d["rows"]) == 1 else f"{n} {k}": (r, d.get("env", {}))
              for n, d in runs.items() for k, r in d.get("rows", {}).items()
              if r.get("total_s") is not None}
    rows = []
    for name, (sm, env) in sorted(passes.items(), key=lambda kv: -kv[1][0]["total_s"]):
        ls = sm.get("layers_s", {})
        fwd = ls.get("forward_x", 0.0) + ls.get("forward_y", 0.0)
        load = env.get("load_average")
        rows.append([f"`{name}`", sm.get("engine", "?"), sm.get("moments_dtype", "float64"),
                     f"{env.get('device', '?')}, {env.get('torch_threads', '?')} threads",
                     f"{fwd:.0f}", f"{ls.get('moments', 0.0):.0f}", f"{ls.get('solve', 0.0):.0f}",
                     f"{sm.get('bn_recalibration_s', 0.0):.0f}", f"**{sm['total_s']:.0f}**",
                     "met" if sm.get("target_met") else "not met",
                     f"{100 * (sm.get('param_sparsity') or 0):.1f} %, MACs × "
                     f"{sm.get('macs_ratio', float('nan')):.2f}",
                     f"{load[0]:.1f}" if isinstance(load, list) and load else "?"])
    out += [md_table(["result", "engine", "moment products", "device", "forward passes",
                      "moments", "solve", "BN recal.", "total", "< 300 s", "result of the pass",
                      "load at start"], rows), ""]
    groups: dict[str, list[str]] = {}
    for name, (sm, _) in sorted(passes.items()):
        groups.setdefault(json.dumps(sm.get("widths", {}), sort_keys=True), []).append(f"`{name}`")
    same = [g for g in groups.values() if len(g) > 1]
    out.append("Identical widths: " + ("; ".join(" = ".join(g) for g in same) if same else
                                        "no two rows")
               + ". Rows with different widths drew different sample positions (the engine "
               "before commit af4acf2 seeded its position draws per consumer; since then the "
               "cached and per-layer paths draw exactly the same rows, which "
               "`tests/test_activation_cache.py` checks). Per-layer phases: the JSON files.\n")
    return "\n".join(out) + "\n"
