"""The equal-cost baselines the benchmarks compare against: a uniformly thinned spec and
Torch-Pruning's global criteria, each brought to a MACs or a params target."""

from __future__ import annotations

import pytest
import torch

import pruning
import search_spaces
from benchmarks.tp_baseline import tp_prune_to
from nas.search import uniform_spec_at

SHAPE = (1, 28, 28)


def _cost(model: torch.nn.Module, metric: str) -> int:
    return pruning.count_macs(model, SHAPE) if metric == "macs" else pruning.count_params(model)


@pytest.mark.parametrize("metric", ["macs", "params"])
def test_uniform_spec_lands_near_the_target(metric: str) -> None:
    full = search_spaces.default_spec("lenet5")
    target = 0.3 * _cost(search_spaces.build(full), metric)
    spec, factor = uniform_spec_at(full, target, metric)
    assert 0 < factor < 1
    assert abs(_cost(search_spaces.build(spec), metric) / target - 1) < 0.05
    # every layer thinned by the same factor (the head's outputs stay)
    assert all(spec.widths[k] < full.widths[k] for k in full.widths)


def test_uniform_spec_of_a_source_family_uses_the_cost_model() -> None:
    from search_spaces.generic import family_for

    fam = family_for("torchvision", "mobilenet_v2", {"num_classes": 10}, input_shape=(3, 32, 32))
    full = search_spaces.default_spec(fam.name)
    macs = pruning.count_macs(search_spaces.build(full), (3, 32, 32))
    spec, factor = uniform_spec_at(full, 0.5 * macs)
    assert 0 < factor < 1
    reached = pruning.count_macs(search_spaces.build(spec), (3, 32, 32)) / macs
    assert abs(reached / 0.5 - 1) < 0.03


def test_uniform_spec_refuses_an_unknown_metric() -> None:
    with pytest.raises(ValueError, match="metric"):
        uniform_spec_at(search_spaces.default_spec("lenet5"), 1e4, "latency")


@pytest.mark.parametrize("criterion", ["magnitude", "taylor"])
@pytest.mark.parametrize("metric", ["macs", "params"])
def test_torch_pruning_stops_at_or_under_the_target(criterion: str, metric: str) -> None:
    torch.manual_seed(0)
    model = search_spaces.build(search_spaces.default_spec("lenet5"))
    calib = [(torch.randn(16, *SHAPE), torch.randint(0, 10, (16,)))]
    target = 0.5 * _cost(model, metric)
    row = tp_prune_to(model, SHAPE, criterion, target, calib, ignored=[model.fc3], steps=100,
                      tol=0.01, metric=metric)
    reached = _cost(model, metric)
    assert reached <= target * 1.01
    assert reached > 0.8 * target  # stepped, not collapsed
    assert row[f"{metric}_reached"] == reached and row["tp_steps"] > 0
    assert model(torch.randn(2, *SHAPE)).shape == (2, 10)
