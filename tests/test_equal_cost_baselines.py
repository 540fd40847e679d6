"""The equal-cost baselines the benchmarks compare against: a uniformly thinned spec and
Torch-Pruning's global criteria, each brought to a MACs or a params target."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pruning
import search_spaces
from benchmarks.tp_baseline import tp_prune_to
from nas.search import uniform_spec_at

SHAPE = (1, 28, 28)
BASE = Path(__file__).resolve().parents[1] / "benchmarks/results/cifar_fast_ckpt/base_s1"


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


@pytest.mark.slow
def test_modelopt_fastnas_lands_at_or_under_the_target_macs(tmp_path: Path) -> None:
    pytest.importorskip("modelopt.torch.prune")
    from benchmarks.modelopt_baseline import fastnas_prune_to
    from nas.checkpoint import load_checkpoint

    torch.manual_seed(0)
    shape = (3, 32, 32)
    # a trained base (committed) scored on labels it gives itself; on such made data FastNAS
    # may land well under the target (its score barely tells subnets apart): the benchmark
    # row records where it landed, this test the wrapper (at or under, plain modules, a copy)
    model = load_checkpoint(BASE).model.float().eval()
    calib = []
    for _ in range(2):
        x = torch.randn(16, *shape)
        with torch.no_grad():
            calib.append((x, model(x).argmax(1)))
    full = pruning.count_macs(model, shape)
    target = round(0.5 * full)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned, row = fastnas_prune_to(model, shape, target, calib,
                                   checkpoint=tmp_path / "fastnas.pth", tol=0.05, bisect_steps=2)
    reached = pruning.count_macs(pruned, shape)
    assert 0 < reached <= target * 1.05
    assert row["macs_reached"] == reached and 0.0 <= row["calib_score"] <= 1.0
    assert all(type(m).__module__.startswith("torch.nn") or m is pruned or
               type(m).__module__.startswith("search_spaces") for m in pruned.modules())
    assert pruned(torch.randn(3, *shape)).shape == (3, 10)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # a copy


def test_modelopt_fastnas_names_a_target_its_search_space_cannot_reach(tmp_path: Path) -> None:
    pytest.importorskip("modelopt.torch.prune")
    from benchmarks.modelopt_baseline import fastnas_prune_to

    model = search_spaces.build(search_spaces.default_spec("lenet5")).eval()  # 6 / 16 channels
    calib = [(torch.randn(16, *SHAPE), torch.randint(0, 10, (16,)))]
    with pytest.raises(RuntimeError, match="did not reach"):
        fastnas_prune_to(model, SHAPE, round(0.3 * _cost(model, "macs")), calib,
                         checkpoint=tmp_path / "fastnas.pth", tol=0.01, bisect_steps=3)
