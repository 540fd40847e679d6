"""Latency as a cost currency (pruning.cost): per-layer timings feed the channel costs.

No timing is asserted (timings are benchmarks: docs/results.md, latency_costs); these tests
check what is timed, the shapes, the settings restored and the wiring into the strengths.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import pruning
from pruning.cost import layer_latency_drops, strength_factors
from pruning.engine import Pass


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 6)
        self.unused = nn.Linear(3, 3)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv2(self.dw(self.act(self.conv1(x)))))
        return self.fc(torch.flatten(x, 1))


def test_every_dense_layer_on_the_path_is_timed_and_threads_are_restored() -> None:
    torch.manual_seed(0)
    net = _Net().eval()
    threads = torch.get_num_threads()
    drops = layer_latency_drops(net, (3, 8, 8), batch_size=2, threads=1, warmup=1, repeats=3)
    assert torch.get_num_threads() == threads
    assert set(drops) == {"conv1", "conv2", "fc"}  # not the grouped conv, not the unused layer
    for row in drops.values():
        assert row["full_ms"] > 0
        assert all(math.isfinite(v) for v in row.values())


def test_latency_currency_gives_every_unit_a_cost_and_a_strength() -> None:
    torch.manual_seed(0)
    cfg = pruning.SparsifyConfig(progress=False, cost_exponent=1.0, cost_currency="latency")
    eng = Pass(_Net().eval(), None, cfg, torch.zeros(1, 3, 8, 8))
    try:
        units = {u for u in eng.strength}
        assert units  # the prunable consumers got a factor
        assert all(math.isfinite(f) and f > 0 for f in eng.strength.values())
        base = cfg.regression.eps_L2
        for name, f in eng.strength.items():
            assert eng.regression_config([eng.by_name[name]]).eps_L2 == pytest.approx(base * f)
    finally:
        eng.close()
    assert strength_factors({"a": 0.0, "b": 2.0}, 1.0)["a"] == 1.0  # an untimed unit stays plain


def test_bad_timing_settings_are_named() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        layer_latency_drops(_Net(), (3, 8, 8), batch_size=0)
    with pytest.raises(ValueError, match="cost_currency"):
        pruning.SparsifyConfig(cost_currency="watts")  # type: ignore[arg-type]
