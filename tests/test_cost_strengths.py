"""Cost-aware strengths (issue 10 item 2): eps_L2 per layer scaled by a channel's cost."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import pruning
from pruning.cost import strength_factors
from pruning.engine import Pass


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 6)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv2(self.act(self.conv1(x))))
        return self.fc(torch.flatten(x, 1))


def _engine(**kw: object) -> Pass:
    cfg = pruning.SparsifyConfig(progress=False, **kw)  # type: ignore[arg-type]
    return Pass(_Net().eval(), None, cfg, torch.zeros(1, 3, 8, 8))


def test_a_channel_costs_what_it_removes_here_and_in_its_producer() -> None:
    eng = _engine(cost_exponent=1.0)
    try:
        # conv2's input channel: one conv1 filter (3*9 MACs x 64 positions) plus its slice of
        # conv2 (4 outputs * 9 x 64); fc's: one conv2 filter (8*9 x 64) plus 6 * 64 MACs.
        c_conv2 = 3 * 9 * 64 + 4 * 9 * 64
        c_fc = 8 * 9 * 64 + 6 * 64
        gm = math.sqrt(c_conv2 * c_fc)
        base = eng.config.regression.eps_L2
        for name, c in (("conv2", c_conv2), ("fc", c_fc)):
            unit = eng.unit_of(eng.by_name[name])
            assert eng.regression_config(unit).eps_L2 == pytest.approx(base * c / gm)
    finally:
        eng.close()


def test_exponent_zero_is_the_plain_pass() -> None:
    eng = _engine()
    try:
        assert eng.strength == {}
        assert eng.regression_config([eng.by_name["fc"]]).eps_L2 == eng.config.regression.eps_L2
    finally:
        eng.close()
    assert strength_factors({"a": 2.0, "b": 8.0}, 0.0) == {"a": 1.0, "b": 1.0}
    assert strength_factors({"a": 2.0, "b": 8.0}, 0.5) == pytest.approx({"a": 2 ** -0.5, "b": 2 ** 0.5})


def test_bad_cost_settings_are_named() -> None:
    with pytest.raises(ValueError, match="cost_exponent"):
        pruning.SparsifyConfig(cost_exponent=float("inf"))
    with pytest.raises(ValueError, match="cost_currency"):
        pruning.SparsifyConfig(cost_currency="joules")  # type: ignore[arg-type]
