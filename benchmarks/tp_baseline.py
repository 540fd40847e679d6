"""Torch-Pruning's global criteria pruned to a MACs or params target: the baseline arm of the budget tables.

One helper for every benchmark that compares against Torch-Pruning (benchmarks/cifar_fast.py,
benchmarks/post_training.py): ``MetaPruner`` with ``global_pruning=True`` and
``GroupMagnitudeImportance(p=2)`` or ``GroupTaylorImportance()`` (Torch-Pruning's defaults),
stepped in small ratio increments (``pruning_ratio`` 0.95 spread over ``steps``) until the
model's conv + linear MACs (``metric="params"``: all its parameters) are at or under
``target * (1 + tol)``. GroupTaylor's
gradients are the cross-entropy loss summed over the calibration batches, recomputed
before every step. The classifier head is never pruned (``ignored``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

import pruning

log = logging.getLogger("tp_baseline")
LOG_EVERY = 10  # steps between progress lines (GroupTaylor's steps take seconds each on a CPU)


def tp_prune_to(model: nn.Module, input_shape: tuple[int, ...], criterion: str,
                target: float, calib: Iterable[Any], *, ignored: Sequence[Any],
                steps: int, tol: float, metric: str = "macs") -> dict[str, Any]:
    """Prune ``model`` in place to ``target`` MACs or params (absolute); returns steps, seconds,
    the MACs and params reached."""
    if metric not in ("macs", "params"):
        raise ValueError(f"metric must be 'macs' or 'params', got {metric!r}")

    def cost() -> int:
        return (pruning.count_macs(model, input_shape) if metric == "macs"
                else pruning.count_params(model))

    import torch_pruning as tp

    if criterion not in ("magnitude", "taylor"):
        raise ValueError(f"criterion must be 'magnitude' or 'taylor', got {criterion!r}")
    model.eval()
    imp = (tp.importance.GroupMagnitudeImportance(p=2) if criterion == "magnitude"
           else tp.importance.GroupTaylorImportance())
    pruner = tp.pruner.MetaPruner(
        model, torch.randn(1, *input_shape), importance=imp, global_pruning=True,
        pruning_ratio=0.95, iterative_steps=steps, ignored_layers=list(ignored))
    done = 0
    t0 = time.perf_counter()
    while cost() > target * (1 + tol) and done < steps:
        if criterion == "taylor":
            model.zero_grad()
            loss_fn = nn.CrossEntropyLoss()
            for x, y in calib:
                loss_fn(model(x), y).backward()
        pruner.step()
        done += 1
        if done % LOG_EVERY == 0:
            log.info("Torch-Pruning %s: step %d, %s %d (target %d), %.0f s", criterion, done,
                     metric, cost(), target, time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return {"criterion": criterion, "tp_steps": done, "prune_s": time.perf_counter() - t0,
            "macs_reached": pruning.count_macs(model, input_shape),
            "params_reached": pruning.count_params(model)}
