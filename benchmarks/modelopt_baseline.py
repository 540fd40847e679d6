"""NVIDIA modelopt's FastNAS pruned to a MACs target: a peer arm of ``benchmarks.post_training``.

``modelopt.torch.prune.prune(model, mode="fastnas", constraints={"flops": "<p>%"}, ...)``
as its documentation describes it: the model is converted into a search space of channel
counts, a sensitivity map is built by scoring subnets (``score_func``: top-1 accuracy on the
labelled calibration batches, BatchNorm re-estimated on them by modelopt's ``data_loader``),
and a binary search over a sensitivity threshold picks the largest-scoring subnet under the
constraint. FastNAS counts its own FLOPs (every op); the budget here is the engine's MACs
(convolutions and linear layers), so the percentage is bisected until the pruned net's MACs
are at or under ``target * (1 + tol)``. The sensitivity map is kept in a checkpoint file, so
every step of the bisection after the first reuses it. No refit, no fine-tune: FastNAS
itself reads labels (its score); the engine's arms do not.

Needs the benchmark-only extra: ``pip install -e '.[bench]'`` (``make setup`` installs it).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pruning
from nas.train import evaluate

log = logging.getLogger("modelopt_baseline")


def fastnas_prune_to(model: nn.Module, input_shape: tuple[int, ...], target: int,
                     calib: Iterable[Any], *, checkpoint: Path, tol: float,
                     bisect_steps: int = 8) -> tuple[nn.Module, dict[str, Any]]:
    """FastNAS-prune a copy of ``model`` to at most ``target`` MACs (absolute); returns the
    pruned net (plain modules, modelopt's search space exported) and what was reached."""
    try:
        import modelopt.torch.prune as mtp
    except ImportError as e:  # pragma: no cover - the extra is installed by make setup
        raise SystemExit("the modelopt arm needs NVIDIA modelopt: pip install -e '.[bench]'") from e
    batches = [(x, y) for x, y in calib]

    def score(m: nn.Module) -> float:
        m.eval()  # scored, and left, in eval mode
        return evaluate(m, batches)[1]

    full = pruning.count_macs(model, input_shape)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    lo, hi = 0.0, 100.0  # percent of FastNAS's FLOPs
    best: tuple[nn.Module, float, int] | None = None
    t0 = time.perf_counter()
    for step in range(bisect_steps):
        pct = 100.0 * target / full if step == 0 else 0.5 * (lo + hi)
        try:  # returns the best subnet exported to plain modules (in place, on the copy)
            cand, _ = mtp.prune(copy.deepcopy(model).eval(), mode="fastnas",
                                constraints={"flops": f"{pct:.3f}%"},
                                dummy_input=torch.zeros(1, *input_shape),
                                config={"data_loader": batches, "collect_func": lambda b: b[0],
                                        "score_func": score, "checkpoint": str(checkpoint),
                                        "verbose": False})
        except ValueError as e:  # under the smallest subnet of its search space
            log.info("FastNAS: %.2f %% of its FLOPs is not satisfiable (%s)", pct,
                     str(e).strip().splitlines()[0])
            lo = pct
            continue
        macs = pruning.count_macs(cand, input_shape)
        log.info("FastNAS: %.2f %% of its FLOPs -> MACs x%.4f (target x%.4f), %.0f s", pct,
                 macs / full, target / full, time.perf_counter() - t0)
        if macs <= target * (1 + tol):
            if best is None or macs > best[2]:
                best = (cand, pct, macs)
            if macs >= target * (1 - tol):
                break
            lo = pct
        else:
            hi = pct
    if best is None:
        raise RuntimeError(f"FastNAS did not reach {target} MACs ({target / full:.3f} of the "
                           f"model's) in {bisect_steps} steps: its search space (channel counts "
                           "in multiples of its divisor) may not go that low")
    cand, pct, macs = best
    if macs < target * (1 - tol):
        log.warning("FastNAS: the nearest subnet found is at MACs x%.4f, under the target x%.4f",
                    macs / full, target / full)
    return cand, {"fastnas_flops_percent": pct, "prune_s": time.perf_counter() - t0,
                  "macs_reached": macs, "params_reached": pruning.count_params(cand),
                  "calib_score": score(cand)}
