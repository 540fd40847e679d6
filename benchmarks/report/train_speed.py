"""docs/results.md section of ``benchmarks.train_speed``: the fast family's base, s / epoch
per execution setting, and the projected wall time of the 24-epoch base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report.fmt import md_table

TARGET_MIN = 40.0  # the target: the base in <= 40 min wall on this 2-core CPU


def render(runs: dict[str, dict[str, Any]], figdir: Path | None = None) -> str:
    out = ["## The fast family's base: training speed per setting (benchmarks/train_speed.py)\n",
           "`airbench_cifar` trained from a fresh init with the head-to-head's recipe and data "
           "(batch 512, 45k CIFAR-10 JPEG-copy images, validation each epoch) for a few epochs "
           "per setting, one setting after the other in one process on an otherwise idle "
           "machine. 's / epoch' is the steady rate (epochs after the first); the 24-epoch "
           f"base = init + final validation + first epoch + 23 steady epochs + the TTA test "
           f"pass. Target: <= {TARGET_MIN:.0f} min.\n"]
    for name, d in sorted(runs.items()):
        env, rows = d.get("environment", {}), d.get("rows", [])
        ref = next((r for r in rows if r["setting"] == "bf16_t2"), None)
        out.append(f"`{name}`: {env.get('device', '?')}, {env.get('cpu_count', '?')} CPUs, torch "
                   f"{env.get('torch', '?')}, git {env.get('git', '?')}, started "
                   f"{env.get('started', '?')}, {d.get('config', {}).get('epochs', '?')} epochs "
                   "per setting.\n")
        out.append(md_table(
            ["setting", "threads", "bf16", "channels-last", "first epoch s", "s / epoch",
             "x bf16_t2", "init + final val s", "test TTA s", "24-epoch base (min)",
             f"<= {TARGET_MIN:.0f} min", "load (1 min) before"],
            [[f"`{r['setting']}`", r["threads"], "yes" if r["amp_effective"] else "no",
              "yes" if r["channels_last"] else "no", f"{r['first_epoch_s']:.0f}",
              f"{r['seconds_per_epoch']:.1f}",
              f"{r['seconds_per_epoch'] / ref['seconds_per_epoch']:.2f}" if ref else "–",
              f"{r['outside_epochs_s']:.0f}", f"{r['test_tta_s']:.0f}",
              f"**{r['projected_base_min']:.1f}**",
              "met" if r["projected_base_min"] <= TARGET_MIN else "not met",
              f"{r['load_average_before'][0]:.1f}" if r.get("load_average_before") else "?"]
             for r in rows]))
        out.append("")
    return "\n".join(out) + "\n"
