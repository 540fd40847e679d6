"""The budget allocation's objective: output-sensitivity weights, and what the pass logs."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import pruning
from pruning import Budget, BudgetError, MACs, RegressionConfig, SparsifyConfig
from pruning.budget import (
    TOLERANCE,
    PlannedUnit,
    output_sensitivity,
    sparsify_to_budget,
)


class _Chain(nn.Module):
    """conv-conv-fc-fc with ReLUs; fc2's output is the network's output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 12, 3, padding=1)
        self.conv2 = nn.Conv2d(12, 16, 3, padding=1)
        self.fc1 = nn.Linear(16 * 4 * 4, 24)
        self.fc2 = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


def _data(shape: tuple[int, ...], n: int = 4, batch: int = 128) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, *shape, generator=g) for _ in range(n)]


def _plan(name: str) -> PlannedUnit:
    return PlannedUnit(name=name, members=(name,), producers=(), channels=1)


def _target(ratio: float) -> Budget:
    return Budget(MACs(), ratio, "target_macs")


def _cfg() -> SparsifyConfig:
    return SparsifyConfig(regression=RegressionConfig(eps_L2=0.03), progress=False)


def test_noise_at_the_output_layer_reaches_the_output_unchanged() -> None:
    torch.manual_seed(0)
    net = _Chain().eval()
    (s,) = output_sensitivity(net, _data((3, 8, 8)), [_plan("fc2")])
    assert s == pytest.approx(1.0, rel=1e-6)


def test_a_linear_layer_passes_noise_on_by_its_column_norms() -> None:
    # y = W2 (fc1 output + n), n_c ~ sqrt(rel) * sigma_c: the output moves by
    # sum_c sigma_c^2 |W2[:, c]|^2 per unit of relative energy, over the output's variance
    torch.manual_seed(0)
    net = _Linear().eval()
    data = _data((8,), n=8)
    (s,) = output_sensitivity(net, data, [_plan("fc1")], max_images=1024)
    with torch.no_grad():
        x = torch.cat(data).double()
        h = net.fc1.double()(x)
        var_h = h.var(0, unbiased=False)
        w2 = net.fc2.weight.double()
        out_var = net.fc2.double()(h).var(0, unbiased=False).sum()
    net.float()
    expected = float((var_h * (w2 ** 2).sum(0)).sum() / out_var)
    assert s == pytest.approx(expected, rel=0.1)


def test_the_output_objective_hits_the_target_and_records_its_weights() -> None:
    torch.manual_seed(0)
    net = _Chain().eval()
    data = _data((3, 8, 8))
    res = sparsify_to_budget(net, data, _cfg(), _target(0.5), data[0][:1],
                             objective="output")
    b = res.budget
    assert b is not None and b["objective"] == "output"
    assert set(b["sensitivity"]) == set(b["widths"]) and all(v > 0 for v in b["sensitivity"].values())
    assert b["sensitivity"]["fc2"] == pytest.approx(1.0, rel=1e-6)
    reached = res.after["macs"] / res.before["macs"]
    assert abs(reached - 0.5) <= max(TOLERANCE * 0.5, b["granularity_step_ratio"])


def test_an_unknown_objective_is_named() -> None:
    net = _Chain().eval()
    data = _data((3, 8, 8), n=1)
    with pytest.raises(BudgetError, match="objective"):
        sparsify_to_budget(net, data, _cfg(), _target(0.5), data[0][:1],
                           objective="loss")  # type: ignore[arg-type]


def test_only_the_plan_and_final_passes_log_layer_lines(caplog: pytest.LogCaptureFixture) -> None:
    # candidates built only to be counted (reachability, allocation rounds) stay quiet
    torch.manual_seed(0)
    net = _Chain().eval()
    with caplog.at_level(logging.INFO, logger="pruning"):
        res = pruning.sparsify(net, _data((3, 8, 8)), _cfg(), target_macs=0.5)
    lines = [r.getMessage() for r in caplog.records]
    kept = [m for m in lines if ": kept " in m]
    assert res.budget is not None
    assert len(kept) == 2 * len(res.budget["widths"]), kept
    assert any(m.startswith("budget: reachability check") for m in lines)
    assert sum(m.startswith("budget: allocation round") for m in lines) == res.budget["rounds"]
