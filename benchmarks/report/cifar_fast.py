"""The fast CIFAR-10 family's head-to-head (``benchmarks/cifar_fast.py``): tables + figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.cifar_fast import plot, render_markdown, summary_markdown
from benchmarks.report.fmt import ROOT

FIGURE = "figures/cifar_fast_acc_vs_macs.png"


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
