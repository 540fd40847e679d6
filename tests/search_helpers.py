"""A real, tiny search for the engine tests: small_cnn at sampled widths, fit on synthetic data.

Module-level functions (picklable), so Ray workers and killed subprocesses can use them too.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

import search_spaces as ss
from nas.search_types import Objective, RejectTrial, TrialContext, TrialResult
from pruning.measure import count_macs

OBJECTIVES = [Objective("accuracy", "maximize"), Objective("macs", "minimize")]
WIDTH_RANGES = {"conv1": (2, 8), "conv2": (2, 16), "conv3": (2, 24), "fc1": (2, 32)}


def sample(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Define-by-run: one width per small_cnn layer."""
    return {k: trial.suggest_int(k, lo, hi) for k, (lo, hi) in WIDTH_RANGES.items()}


@functools.lru_cache(maxsize=1)
def synthetic_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """10 noisy prototypes of 1x8x8 images: learnable, not trivially separable."""
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(10, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (768,), generator=g)
    x = protos[y] + 1.2 * torch.randn(768, 1, 8, 8, generator=g)
    return x[:512], y[:512], x[512:], y[512:]


def fit_and_score(spec: ss.ArchSpec, steps: int = 20, seed: int = 0) -> tuple[nn.Module, float]:
    torch.manual_seed(seed)
    model = ss.build(spec)
    xtr, ytr, xte, yte = synthetic_data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: a second thread only adds overhead
    try:
        for step in range(steps):
            idx = torch.arange(step * 48, step * 48 + 48) % len(xtr)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    return model, acc


def evaluate(params: dict[str, Any], ctx: TrialContext, *, macs_budget: float | None = None,
             ) -> TrialResult:
    """Build small_cnn at the sampled widths, count MACs, fit briefly, score on held-out data."""
    t0 = time.perf_counter()
    spec = ss.default_spec("small_cnn").with_widths(params)
    model = ss.build(spec)
    macs = count_macs(model, spec.input_shape)
    if macs_budget is not None and macs > macs_budget:
        raise RejectTrial(f"macs {macs} > budget {macs_budget:g}")
    model, acc = fit_and_score(spec)
    spec.save(ctx.trial_dir / "arch.json")
    torch.save(model.state_dict(), ctx.trial_dir / "model.pt")
    return TrialResult(
        objectives={"accuracy": acc, "macs": float(macs)},
        attrs={"arch_spec": spec.to_dict(), "widths": dict(spec.widths),
               "params_count": sum(p.numel() for p in model.parameters()),
               "fit_s": time.perf_counter() - t0, "checkpoint": str(ctx.trial_dir)},
    )


def evaluate_failing_at(params: dict[str, Any], ctx: TrialContext, *, fail_at: int) -> TrialResult:
    if ctx.number == fail_at:
        raise RuntimeError(f"deliberate failure in trial {ctx.number}")
    return evaluate(params, ctx)


def evaluate_tracked(params: dict[str, Any], ctx: TrialContext, *, tracker: Any,
                     fail_at: int | None = None) -> TrialResult:
    """``evaluate`` that logs its trial to W&B (a Tracker shipped to the worker)."""
    if ctx.number == fail_at:
        raise RuntimeError(f"deliberate failure in trial {ctx.number}")
    result = evaluate(params, ctx)
    tracker.log_trial(ctx.number, params, result)
    return result


def evaluate_hanging_at(params: dict[str, Any], ctx: TrialContext, *, hang_at: int,
                        marker: str) -> TrialResult:
    """Trial ``hang_at`` announces itself in ``marker`` and then blocks (to be killed)."""
    if ctx.number == hang_at:
        Path(marker).write_text(str(ctx.number))
        time.sleep(600)
    return evaluate(params, ctx)


def load_trial_model(record: Any) -> tuple[nn.Module, ss.ArchSpec]:
    """``load_model`` for export: rebuild from the trial's arch.json + weights."""
    d = Path(record.attrs["checkpoint"])
    spec = ss.ArchSpec.load(d / "arch.json")
    model = ss.build(spec)
    model.load_state_dict(torch.load(d / "model.pt"))
    return model, spec
