"""One Budget of one Currency from the config to the engine, open to currencies of your own.

``pruning.Budget(currency, value)`` validates its value once (ratio or whole count; latency
always ms); the budgeted pass measures only through the currency, so a user's currency (here:
the convolutions' weights alone, which no built-in counts) is hit like MACs are.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pytest
import torch
from torch import nn

import pruning
from pruning import Budget, BudgetError, Currency, Latency, MACs, Params
from pruning.budget import TOLERANCE


def test_values_are_checked_once_with_the_field_named() -> None:
    assert Budget(MACs(), 0.5).absolute(1000.0) == 500.0
    assert Budget(Params(), 300).absolute(1000.0) == 300.0
    assert Budget(Latency("cpu"), 0.5).absolute(10.0) == 0.5  # ms, never a share
    with pytest.raises(BudgetError, match="prune.target_macs must be a finite number > 0"):
        Budget(MACs(), float("inf"), "prune.target_macs")
    with pytest.raises(BudgetError, match="whole number"):
        Budget(Params(), 12.5)
    with pytest.raises(BudgetError, match="batch_size must be >= 1"):
        Latency("cpu", batch_size=0)
    with pytest.raises(BudgetError, match="one budget target at a time"):
        Budget.from_targets(target_macs=0.5, target_params=0.5)
    with pytest.raises(BudgetError, match="target_latency_ms needs the latency measurement"):
        Budget.from_targets(target_latency_ms=3.0)
    assert Budget.from_targets() is None
    assert Budget.from_targets(target_latency_ms=3.0, latency=Latency("cpu", 4)) == Budget(
        Latency("cpu", 4), 3.0, "target_latency_ms")


class ConvWeights(Currency):
    """A currency of one's own: the weights of the convolutions only."""

    name: ClassVar[str] = "conv_weights"
    unit: ClassVar[str] = "conv weights"
    steps_in: ClassVar[Literal["macs", "params"]] = "params"

    def measure(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        return float(sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d)))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1)
        self.fc = nn.Linear(24 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


def test_a_currency_of_ones_own_is_budgeted_like_the_built_in_ones() -> None:
    torch.manual_seed(0)
    net = _Net().eval()
    g = torch.Generator().manual_seed(0)
    data = [torch.randn(64, 3, 8, 8, generator=g) for _ in range(6)]
    cfg = pruning.SparsifyConfig(regression=pruning.RegressionConfig(eps_L2=0.03),
                                 progress=False)
    res = pruning.sparsify(net, data, cfg, budget=Budget(ConvWeights(), 0.4, "conv budget"))
    b = res.budget
    assert b is not None and b["metric"] == "conv_weights" and b["field"] == "conv budget"
    full = ConvWeights().measure(net, (3, 8, 8))
    reached = ConvWeights().measure(res.model, (3, 8, 8))
    assert b["reached"] == reached and b["original"] == full
    # the fc's weights are not this currency's: only the convs' count
    assert abs(reached / full - 0.4) <= max(TOLERANCE * 0.4, b["granularity_step_ratio"])
    with pytest.raises(BudgetError, match="conv budget=0.001 is unreachable"):
        pruning.sparsify(net, data, cfg, budget=Budget(ConvWeights(), 0.001, "conv budget"))
    with pytest.raises(TypeError, match=r"budget= takes a pruning.Budget"):
        pruning.sparsify(net, data, cfg, budget=0.5)  # type: ignore[arg-type]
