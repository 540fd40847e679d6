"""Cost-aware strengths (issue 10 item 2): each layer's eps_L2 scaled by what a channel costs.

A channel of consumer u costs, at the full widths, the MACs (or parameters) it removes in
u itself and in its producer(s) (``pruning.budget``'s bilinear width model). With
``SparsifyConfig.cost_exponent = a`` the layer's ridge becomes

    eps_L2(u) = eps_L2 * (cost_u / geometric mean of cost over the pruned units) ** a,

so expensive channels are penalised harder and go first; ``a = 0`` is the plain pass.
With a budget target the allocation already weighs error against cost, and the strengths
only change the channel rankings.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from torch import nn

from pruning.budget import _CostModel, _UnitPlan

__all__ = ["channel_costs", "strength_factors"]


def channel_costs(model: nn.Module, input_shape: tuple[int, ...], units: list[list[Any]], *,
                  currency: Literal["macs", "params"]) -> dict[str, float]:
    """Cost of one input channel of every unit (keyed by its head consumer), full widths."""
    plans = [_UnitPlan(name=u[0].name, members=tuple(c.name for c in u),
                       producers=tuple(u[0].producers), channels=int(u[0].num_channels),
                       min_width=1, ranking=[]) for u in units]
    model_cost = _CostModel(model, input_shape, plans, currency)
    full = [p.channels for p in plans]
    return {p.name: model_cost.step(i, full) for i, p in enumerate(plans)}


def strength_factors(costs: dict[str, float], exponent: float) -> dict[str, float]:
    """``(cost / geometric mean) ** exponent`` per unit (1.0 for zero-cost units)."""
    pos = [c for c in costs.values() if c > 0]
    if exponent == 0 or not pos:
        return {k: 1.0 for k in costs}
    gm = math.exp(sum(math.log(c) for c in pos) / len(pos))
    return {k: (c / gm) ** exponent if c > 0 else 1.0 for k, c in costs.items()}
