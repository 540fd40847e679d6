"""Budget-targeted pruning: hit a MACs / params / latency target.

``sparsify(model, loader, config, target_macs=0.5)`` works in two data passes whatever the
number of search steps:

1. **Plan pass**: each unit's channels ranked - by default (``plan="greedy"``) by greedy
   forward selection on the least-squares error over every channel of the unpruned
   network's inputs; with ``plan="entropic"`` by the ordinary entropic pass at ``config``'s
   strengths (X from the pruned-so-far network, Y from the original) - BN recalibration
   skipped. For every unit it records the channel ranking (best first) and the
   **error-vs-width curve**
   ``e_u(k)``: the relative least-squares error of the layer's output on its top-k channels
   for every k = 1..C, all from one Cholesky factor of the rank-ordered covariance (the
   residual after each prefix of a nested sequence of regressors is the running sum of the
   squared rows of ``L^-1 R^T``). No solve is repeated.
2. **Allocation** (no data): widths start full; one channel at a time is taken from the
   unit whose next channel costs the least error per unit of budget currency removed
   (``(e_u(k-1) - e_u(k)) / dcost_u``), until the cost is at or under the target; then
   channels that still fit are handed back by the best error gain per cost. The cost is a
   bilinear model of the widths (each Conv/Linear scales with its input and output
   channel ratios; MACs stand in for latency); the candidate is then built for real
   (surgery without data, exact counting or timing) and the model's goal is corrected
   (ratio, then secant through the last two rounds), up to 6 rounds, so BatchNorm
   parameters, grouped convs and latency are measured, not modelled.
3. **Final pass**: the allocated widths, each unit's channels by default the plan's own
   prefixes (:func:`pruning.prune_to_widths`: cut before the moments are read, a refit
   only), or chosen again by a selection (``pruning.GreedyReconstruction``,
   ``pruning.LassoSelection``) on the final pass's own inputs; then refitted by least
   squares on the same calibration data.

Why greedy by default: on the fast CIFAR-10 family (3 bases x 3 budgets, 2,048 calibration
images, right after the pass) the greedy plan kept more validation accuracy than the
entropic plan in every cell, in a third of the time or less (docs/findings.md, post-training
criteria); the entropic regression stays the pass without a budget.

A budgeted pass therefore costs about one ordinary pass plus one refit pass (measured in
``benchmarks/results/budget_hit.json``). The result's ``budget`` dict records the target,
what was reached (absolute and as a ratio of the original), whether it is within 2 % and,
when it is not, the smallest step the channel granularity allows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from pruning.config import SparsifyConfig, SparsifyResult
from pruning.cost import CostModel, WidthUnit
from pruning.criteria import Criterion, Entropic, Selection, greedy_reconstruction, unit_moments
from pruning.criteria import Unit as CriterionUnit
from pruning.currency import Budget, BudgetError
from pruning.engine import CalibCache, Pass, calib_cache_key, run_given
from pruning.moments import Moments, feature_columns
from pruning.regression import cholesky_psd

__all__ = ["Budget", "BudgetError", "DEFAULT_PLAN", "GreedyPlan", "PlannedUnit", "TOLERANCE",
           "allocate", "error_curve", "output_sensitivity",
           "sparsify_to_budget"]

# What the allocation minimises: the sum of per-layer relative output errors ("relative"),
# or the same errors weighted by how much each layer's output error moves the network's
# output ("output", :func:`output_sensitivity`).
Objective = Literal["relative", "output"]
OBJECTIVES = ("relative", "output")
# How the plan pass ranks each unit's channels (and so the error-vs-width curves).
Plan = Literal["entropic", "greedy"]
PLANS = ("entropic", "greedy")
# The budget's default plan (pruning.sparsify applies it). The final pass's default is the
# plan's own ranking for either plan: with the greedy plan, choosing again greedily on the
# final pass's own inputs (pruning.GreedyReconstruction) tied it on validation (-0.03 pt mean
# over six cells of the fast family) at about twice the pass time.
DEFAULT_PLAN: Plan = "greedy"


class GreedyPlan(Criterion):
    """The plan pass's ranking by greedy forward selection (:func:`greedy_reconstruction`
    over every channel): ``w`` is C - (position in the greedy order), so ranking by ``w`` is
    the greedy order and its prefixes are the greedy subsets; every channel is kept."""

    def select(self, unit: CriterionUnit) -> Selection:
        mom = unit_moments(unit)
        C = unit.num_channels
        order = greedy_reconstruction(mom, C, ridge=unit.setting.refit_ridge)
        w = torch.empty(C, dtype=torch.float64)
        w[order] = torch.arange(C, 0, -1, dtype=torch.float64)
        return Selection(keep=torch.arange(C), params=None, w=w)

log = logging.getLogger(__name__)

# The pass lands within this relative distance of the target when the granularity allows.
TOLERANCE = 0.02
_ROUNDS = 6
_RIDGE = 1e-6


# ---------------------------------------------------------------------- curves


@dataclass
class PlannedUnit(WidthUnit):
    """What the plan pass learnt about one unit (a consumer, or a coupled set): its channel
    ranking (best first), ``error[k]``, the relative output error on the top-k channels, and
    the weight the allocation gives that error (it minimises ``sum weight * error``)."""

    min_width: int = 1
    ranking: list[int] = field(default_factory=list)
    error: list[float] = field(default_factory=list)
    weight: float = 1.0


def error_curve(parts: Sequence[Moments], ranking: Tensor) -> list[float]:
    """Relative LS error of the outputs on the top-k channels of ``ranking``, k = 0..C.

    One Cholesky of the rank-ordered covariance (ridge ``1e-6`` relative to each channel's
    variance, as the refit): the explained variance after the first j features is the
    running sum of the squared rows of ``L^-1 R^T``. Several parts (coupled consumers)
    add their residuals and their total variances.
    """
    C = int(ranking.numel())
    resid = torch.zeros(C + 1, dtype=torch.float64)
    total = 0.0
    for mom in parts:
        k = mom.group_size
        cols = feature_columns(ranking.to(mom.mu_x.device), k)
        S = mom.S[cols][:, cols]
        S = 0.5 * (S + S.T)
        R = mom.R[:, cols]
        var = torch.diagonal(S).clamp_min(0.0)
        floor = float(var[var > 0].mean()) if bool((var > 0).any()) else 1.0
        var = torch.where(var > 1e-12 * floor, var, torch.full_like(var, floor))
        L = cholesky_psd(S + torch.diag(_RIDGE * var))
        Z = torch.linalg.solve_triangular(L, R.T.contiguous(), upper=False)
        explained = torch.cumsum((Z * Z).sum(1), 0).view(C, k)[:, -1].cpu()
        tr_v = float(mom.V.sum())
        total += tr_v
        resid[0] += tr_v
        resid[1:] += (tr_v - explained).clamp_min(0.0)
    if total <= 0:
        return [0.0] * (C + 1)
    curve = (resid / total).tolist()
    for i in range(C - 1, -1, -1):  # nested prefixes: never better with fewer channels
        curve[i] = max(curve[i], curve[i + 1])
    return curve


# ---------------------------------------------------------------------- cost model


def allocate(units: list[PlannedUnit], cost: CostModel, target: float) -> tuple[list[int], float]:
    """Greedy widths with model cost <= target (or the minimum); returns (widths, smallest step).

    Removal: always the channel with the least (weighted) error increase per unit of cost
    saved; then hand-back: channels that still fit, by the largest error decrease per cost.
    """
    k = [u.channels for u in units]
    cur = cost.cost(k)
    while cur > target:
        best, best_score = -1, math.inf
        for i, u in enumerate(units):
            if k[i] <= u.min_width:
                continue
            dc = cost.step(i, k)
            if dc <= 0:
                continue
            score = u.weight * max(u.error[k[i] - 1] - u.error[k[i]], 0.0) / dc
            if score < best_score:
                best, best_score = i, score
        if best < 0:
            break
        k[best] -= 1
        cur = cost.cost(k)
    while True:
        best, best_score = -1, -math.inf
        for i, u in enumerate(units):
            if k[i] >= u.channels:
                continue
            k[i] += 1
            fits = cost.cost(k) <= target
            k[i] -= 1
            dc = cost.step(i, k)
            if not fits or dc <= 0:
                continue
            score = u.weight * max(u.error[k[i]] - u.error[k[i] + 1], 0.0) / dc
            if score > best_score:
                best, best_score = i, score
        if best < 0:
            break
        k[best] += 1
    steps = [cost.step(i, k) for i in range(len(units)) if k[i] < units[i].channels]
    return k, (min(steps) if steps else 0.0)


# ---------------------------------------------------------------------- sensitivity


def output_sensitivity(model: nn.Module, loader: Iterable[Any], units: Sequence[PlannedUnit], *,
                       max_images: int = 256, rel: float = 0.05, seed: int = 0) -> list[float]:
    """How much a relative output error of each unit moves the network's output.

    On the first ``max_images`` calibration images, Gaussian noise of relative energy
    ``rel`` (per output channel: ``sqrt(rel)`` x that channel's standard deviation) is added
    to the outputs of the unit's consumers in the original network; the unit's sensitivity
    is the relative squared change of the network output (``sum (f' - f)^2 / sum (f -
    mean f)^2``) per unit of relative energy injected. The allocation's ``e_u(k)`` are the
    same relative energies, so ``sensitivity * e_u(k)`` estimates each layer's error as
    seen at the output (linearised, isotropic noise in place of the real residual). One
    forward pass per unit on ``max_images`` images.
    """
    from pruning.capture import batch_inputs as _batch_inputs

    device = next(model.parameters()).device
    xs: list[Tensor] = []
    n = 0
    for batch in loader:
        x = _batch_inputs(batch)
        xs.append(x[: max_images - n])
        n += xs[-1].shape[0]
        if n >= max_images:
            break
    x = torch.cat(xs).to(device)
    mods = dict(model.named_modules())
    was_training = model.training
    model.eval()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out: list[float] = []
    try:
        with torch.no_grad():
            ref = model(x)
            if not isinstance(ref, Tensor):
                raise TypeError("output_sensitivity: the model's output must be a tensor, got "
                                f"{type(ref).__name__}")
            ref = ref.double()
            denom = float(((ref - ref.mean(0)) ** 2).sum()) or 1.0
            for u in units:
                injected = [0.0, 0.0]  # noise energy, output variance energy

                def hook(_m: nn.Module, _i: Any, y: Tensor, injected: list[float] = injected
                         ) -> Tensor:
                    dims = [0, *range(2, y.dim())]
                    yd = y.double()
                    cen = yd - yd.mean(dim=dims, keepdim=True)
                    std = cen.pow(2).mean(dim=dims, keepdim=True).sqrt()
                    noise = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(y.device)
                    noise = noise * std * math.sqrt(rel)
                    injected[0] += float(noise.pow(2).sum())
                    injected[1] += float(cen.pow(2).sum())
                    return (yd + noise).to(y.dtype)

                handles = [mods[m].register_forward_hook(hook) for m in u.members]
                try:
                    moved = model(x).double()
                finally:
                    for h in handles:
                        h.remove()
                frac = injected[0] / injected[1] if injected[1] > 0 else 0.0
                change = float(((moved - ref) ** 2).sum()) / denom
                out.append(change / frac if frac > 0 else 0.0)
    finally:
        model.train(was_training)
    return out


# ---------------------------------------------------------------------- measuring


def _keep_sets(units: list[PlannedUnit], widths: list[int]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for u, k in zip(units, widths, strict=True):
        keep = sorted(u.ranking[:k])
        for m in u.members:
            out[m] = keep
    return out


@contextlib.contextmanager
def _quiet_engine() -> Iterator[None]:
    """Hide the engine's per-layer INFO lines ("kept 1/64 ... 0 it") while a candidate is
    built only to be counted: they would read as a pruning result."""
    engine_log = logging.getLogger("pruning")
    level = engine_log.level
    engine_log.setLevel(max(logging.WARNING, level))
    try:
        yield
    finally:
        engine_log.setLevel(level)


def _thinned(model: nn.Module, keep: dict[str, list[int]], example: Tensor,
             config: SparsifyConfig) -> nn.Module:
    """The model cut to ``keep`` without data (no refit), to count or time its cost."""
    cfg = dataclasses.replace(config, progress=False)
    with _quiet_engine():
        return run_given(model, keep, None, cfg, example, refit=False).model


# ---------------------------------------------------------------------- the pass


def _plan_units(unit: CriterionUnit, sel: Selection, plans: list[PlannedUnit]) -> None:
    head, train = unit.consumers[0], unit.moments
    assert train is not None, "the plan pass's entropic selection reads moments"
    C = head.num_channels
    rcfg = unit.setting
    w = sel.w if sel.w is not None else torch.ones(C, dtype=torch.float64)
    ranking = torch.sort(w.detach().reshape(-1).cpu(), descending=True, stable=True).indices
    plans.append(PlannedUnit(
        name=head.name, members=tuple(unit.names), producers=tuple(head.producers),
        channels=C, min_width=int(rcfg.min_channels), ranking=[int(i) for i in ranking],
        error=error_curve(train, ranking)))


def sparsify_to_budget(
    model: nn.Module,
    loader: Iterable[Any],
    config: SparsifyConfig,
    budget: Budget,
    example: Tensor,
    *,
    objective: Objective = "relative",
    selection: Callable[[Mapping[str, int]], Criterion] | None = None,
    plan: Plan = "entropic",
    cache: CalibCache | None = None,
) -> SparsifyResult:
    """The budgeted pass (see the module docstring); returns a SparsifyResult with ``budget``.

    Every choice is explicit here (the entropic plan and the plan's ranking unless told):
    :func:`pruning.sparsify` is the entry point that applies the defaults
    (:data:`DEFAULT_PLAN`).

    ``cache``: calibration batches and reference outputs kept from an earlier pass over the
    same model and data (refilled when they are not), e.g. across the trials of a search;
    the plan pass fills it and the final pass reads it either way.

    ``plan="greedy"`` ranks each unit's channels in the plan pass by greedy forward
    selection on the least-squares error (:class:`GreedyPlan`: no entropic solve, and the
    plan pass keeps every channel, so each layer is ranked on the unpruned network's inputs)
    instead of the entropic regression's weights.

    ``objective="output"`` weights each unit's error curve by :func:`output_sensitivity`
    (measured once on the original network, before the plan pass). ``selection`` (e.g.
    ``pruning.GreedyReconstruction``) chooses each unit's channels in the final pass at the
    allocated widths instead of the plan's own ranking (same allocation, same refit).
    """
    if objective not in OBJECTIVES:
        raise BudgetError(f"budget objective must be one of {OBJECTIVES}, got {objective!r}")
    if plan not in PLANS:
        raise BudgetError(f"budget plan must be one of {PLANS}, got {plan!r}")
    t_start = time.perf_counter()
    input_shape = tuple(example.shape[1:])
    currency = budget.currency
    full = budget.measure(model, input_shape)
    goal = budget.absolute(full)

    # Reachability, before any data pass: every prunable unit at its minimum width.
    with Pass(model, None, config, example) as p:
        units = p.prunable_units(config.layers)
        floor_plans = [PlannedUnit(name=u[0].name, members=tuple(c.name for c in u),
                                   producers=tuple(u[0].producers), channels=u[0].num_channels,
                                   min_width=int(p.regression_config(u).min_channels),
                                   ranking=list(range(u[0].num_channels)))
                       for u in units]
        ridges = [float(p.regression_config(u).refit_ridge) for u in units]
    if not floor_plans:
        raise BudgetError(f"{budget.field_name}: the model has no prunable layer "
                          f"(consumers {config.layers or 'all'}), so no budget can be met")
    floor_model = _thinned(model, _keep_sets(floor_plans, [p.min_width for p in floor_plans]),
                           example, config)
    floor = budget.measure(floor_model, input_shape)
    del floor_model
    log.info("budget: reachability check: every prunable layer at min_channels gives %.6g "
             "(%.4g of the original); the target is %.6g (%.4g)", floor, floor / full, goal,
             goal / full)
    if floor > goal * (1 + TOLERANCE):
        raise BudgetError(
            f"{budget.field_name}={budget.value:g} is unreachable: the target is {goal:.6g} "
            f"{currency.unit} ({goal / full:.4g} of the original {full:.6g}), but with every prunable "
            f"layer at min_channels the model still has {floor:.6g} ({floor / full:.4g}); "
            "raise the target or lower min_channels")

    # 1. plan pass
    plans: list[PlannedUnit] = []

    planner: Criterion = GreedyPlan() if plan == "greedy" else Entropic()

    class _Plan(Criterion):  # the planner's selection, recording each unit's ranking and curve
        def select(self, unit: CriterionUnit) -> Selection:
            sel = planner.select(unit)
            _plan_units(unit, sel, plans)
            return sel

    t0 = time.perf_counter()
    plan_cfg = dataclasses.replace(config, recalibrate_bn=False)
    cache = cache if cache is not None else CalibCache()
    # The greedy plan keeps every channel, so each unit is ranked on the unpruned network's
    # inputs whatever else the call prunes: a unit planned by an earlier call on the same
    # model, data and sampling (cache.key) is reused, not planned again.
    data_key = calib_cache_key(model, config, example) if plan == "greedy" else None
    stored = cache.plans if data_key is not None and cache.filled and cache.key == data_key \
        else {}
    reused = [stored.get(("greedy", f.name, f.members, r)) for f, r in zip(floor_plans, ridges,
                                                                           strict=True)]
    missing = [f for f, u in zip(floor_plans, reused, strict=True) if u is None]
    plan_reused = not missing
    units_reused = len(floor_plans) - len(missing)
    if plan_reused:
        log.info("budget: plan pass reused (the greedy plan of every unit, from an earlier "
                 "call on the same model and data)")
        cache_reused = True
    else:
        log.info("budget: plan pass (the %s pass at the configured strengths, for the "
                 "channel rankings and error-vs-width curves; its widths are not the result)%s",
                 plan, f"; {units_reused} units' greedy plans reused" if units_reused else "")
        # only the units not planned yet (the greedy plan of one does not depend on another)
        layers = ([m for f in missing for m in f.members] if units_reused
                  else config.layers)
        plan_run = Pass(model, loader, plan_cfg, example).run(_Plan(), layers, cache=cache)
        cache_reused = bool(plan_run.engine.get("calib_cache_reused"))  # from an earlier call
        del plan_run
        if data_key is not None and cache.key == data_key:
            by_name = dict(zip((f.name for f in floor_plans), ridges, strict=True))
            for u in plans:
                if u.name in by_name:
                    cache.plans[("greedy", u.name, u.members, by_name[u.name])] = \
                        dataclasses.replace(u)
    by_unit = {u.name: u for u in plans}
    plans = [dataclasses.replace(u, min_width=f.min_width) if u is not None else by_unit[f.name]
             for f, u in zip(floor_plans, reused, strict=True)]
    plan_s = time.perf_counter() - t0

    # 2. allocation, checked on the real thinned model
    t0 = time.perf_counter()
    if objective == "output":
        for planned, s in zip(plans, output_sensitivity(model, loader, plans), strict=True):
            planned.weight = s
    cost = CostModel(model, input_shape, plans, currency.steps_in)
    model_full = cost.full()
    # the cost model covers the prunable part; the rest (BN, fixed layers) is an offset of
    # an additive currency, a scale of another (latency)
    proxy_goal = goal - (full - model_full) if currency.additive else model_full * goal / full
    best: tuple[float, list[int], float] | None = None
    rounds: list[dict[str, Any]] = []
    for _ in range(_ROUNDS):
        widths, step = allocate(plans, cost, proxy_goal)
        reached = budget.measure(_thinned(model, _keep_sets(plans, widths), example, config),
                                 input_shape)
        rounds.append({"model_goal": proxy_goal, "reached": reached, "widths": widths,
                       "modelled": cost.cost(widths)})
        log.info("budget: allocation round %d: widths %s, %.6g (%.4g of the original)",
                 len(rounds), dict(zip((p.name for p in plans), widths, strict=True)), reached,
                 reached / full)
        score = abs(reached - goal) + (0.0 if reached <= goal * (1 + TOLERANCE) else goal)
        if best is None or score < best[0]:
            best = (score, widths, reached)
        if abs(reached - goal) <= TOLERANCE * goal:
            break
        modelled = cost.cost(widths)
        if reached <= 0 or modelled <= 0:
            break
        pts = [(float(r["modelled"]), float(r["reached"])) for r in rounds[:-1]]
        prev = next(((m, v) for m, v in reversed(pts) if abs(m - modelled) > 1e-9 * model_full),
                    None)
        if prev is not None and abs(reached - prev[1]) > 1e-12 * max(abs(reached), 1.0):
            # secant through the last two (modelled, measured) points: latency has a part
            # that does not shrink with the widths, which a pure ratio correction misses
            slope = (reached - prev[1]) / (modelled - prev[0])
            proxy_goal = modelled + (goal - reached) / slope if slope > 0 else proxy_goal * goal / reached
        else:
            proxy_goal = proxy_goal * goal / reached
        proxy_goal = min(max(proxy_goal, 0.0), model_full)
    assert best is not None
    _, widths, reached_plan = best
    alloc_s = time.perf_counter() - t0

    # 3. final pass: the allocated channels, refitted on the same data
    log.info("budget: final pass: the allocated widths, least-squares refit")
    t0 = time.perf_counter()
    keep = _keep_sets(plans, widths)
    result = run_given(model, keep, loader, config, example, refit=True, cache=cache,
                       select=selection)
    result.engine["reused_plan_caches"] = cache.filled
    result.engine["calib_cache_reused"] = cache_reused
    final_s = time.perf_counter() - t0
    reached = budget.measure(result.model, input_shape)
    within = abs(reached - goal) <= TOLERANCE * goal
    # the step is in the cost model's currency (MACs for a latency target)
    steps = "MACs" if currency.steps_in == "macs" else "params"
    step_ratio = step / model_full if model_full else math.nan
    result.budget = {
        "metric": currency.name,
        "field": budget.field_name,
        "target": budget.value,
        "target_value": goal,
        "target_ratio": goal / full if full else math.nan,
        "original": full,
        "reached": reached,
        "reached_ratio": reached / full if full else math.nan,
        "within_tolerance": within,
        "tolerance": TOLERANCE,
        "granularity_step": step,
        "granularity_step_ratio": step_ratio,
        "note": ("within 2 % of the target" if within else
                 f"nearest the channel granularity allows (smallest step {step_ratio:.3%} of "
                 f"the original {steps}; "
                 f"reached {reached / full:.4g} for a target of {goal / full:.4g})"
                 + ("" if currency.additive else " or the measurement's noise")),
        "widths": {p.name: k for p, k in zip(plans, widths, strict=True)},
        "predicted_error": {p.name: p.error[k] for p, k in zip(plans, widths, strict=True)},
        "objective": objective,
        "plan": plan,
        "selection": "plan" if selection is None else getattr(selection, "__name__", repr(selection)),
        "sensitivity": {p.name: p.weight for p in plans} if objective == "output" else None,
        "plan_reused": plan_reused,
        "plan_units_reused": units_reused,
        "rounds": len(rounds),
        "round_log": [{"modelled_goal": r["model_goal"], "modelled": r["modelled"],
                       "measured": r["reached"]} for r in rounds],
        "seconds": {"plan_pass": plan_s, "allocation": alloc_s, "final_pass": final_s,
                    "total": time.perf_counter() - t_start},
    }
    if not currency.additive:
        result.budget.update(reached_at_plan=reached_plan)
    result.budget.update(currency.describe())
    return result
