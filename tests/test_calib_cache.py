"""The calibration cache across passes (a search's trials): the second pass over the same
model and data reads no batch and runs no reference pass, and prunes exactly as a pass
without the cache; a cache filled for another model or other sampling is refilled, never
read; a search's trials after the first reuse their worker's cache. The greedy plan, which
ranks every unit on the unpruned inputs, is kept in the cache too and reused by the next
budgeted call (an entropic plan, which depends on the call's strengths, never is)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from bad_input_helpers import config
from torch import nn

import nas
import pruning
from nas.pareto import load_records

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # T < d on tiny calibration


class _Counting:
    """A re-iterable calibration set that counts how often it is read."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.batches = batches
        self.reads = 0

    def __iter__(self):
        self.reads += 1
        return iter(self.batches)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                         nn.Conv2d(12, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4)).eval()


def _data() -> _Counting:
    g = torch.Generator().manual_seed(0)
    return _Counting([torch.randn(8, 3, 10, 10, generator=g) for _ in range(4)])


def _cfg(**kw) -> pruning.SparsifyConfig:
    return pruning.SparsifyConfig(progress=False, **kw)


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("budget", [{}, {"target_macs": 0.5}])
def test_a_second_pass_reuses_the_cache_and_prunes_the_same(budget: dict) -> None:
    model, cache = _net(), pruning.CalibCache()
    first_data, second_data = _data(), _data()
    first = pruning.sparsify(model, first_data, _cfg(), cache=cache, **budget)
    assert cache.filled and first.engine["calib_cache_reused"] is False
    second = pruning.sparsify(model, second_data, _cfg(), cache=cache, **budget)
    assert second.engine["calib_cache_reused"] is True
    # the first batch is read for tracing; the data are not read again, and no reference
    # pass ran over them
    assert second_data.reads < first_data.reads
    plain = pruning.sparsify(model, _data(), _cfg(), **budget)
    assert _same(second.model, plain.model) and _same(first.model, plain.model)


def test_a_cache_of_another_model_or_sampling_is_refilled() -> None:
    cache = pruning.CalibCache()
    pruning.sparsify(_net(0), _data(), _cfg(), cache=cache)
    other = _net(1)  # same architecture, other weights
    res = pruning.sparsify(other, _data(), _cfg(), cache=cache)
    assert res.engine["calib_cache_reused"] is False
    assert _same(res.model, pruning.sparsify(other, _data(), _cfg()).model)
    resampled = pruning.sparsify(other, _data(), _cfg(calib_positions_per_image=5), cache=cache)
    assert resampled.engine["calib_cache_reused"] is False
    again = pruning.sparsify(other, _data(), _cfg(calib_positions_per_image=5), cache=cache)
    assert again.engine["calib_cache_reused"] is True


@pytest.mark.slow
def test_a_searchs_trials_reuse_their_workers_cache(tmp_path: Path) -> None:
    cfg = nas.RunConfig.model_validate(config(**{
        "name": "reuse", "search.trials": 3, "prune.target_macs": 0.5,
        "finetune.epochs": 0, "search.accuracy": "recovered",
        "recovery": {"mode": "bn"}}))
    nas.run_search(cfg, tmp_path / "run", progress=False)
    recs = sorted(load_records(f"sqlite:///{tmp_path / 'run' / 'study.db'}", "reuse"),
                  key=lambda r: r.number)
    assert [r.attrs["calib_cache_reused"] for r in recs] == [False, True, True]
    assert all(r.attrs["prune_seconds"] > 0 for r in recs)


# ---------------------------------------------------------------- the greedy plan, reused


def _run(model: nn.Module, cache: pruning.CalibCache, ratio: float, plan: str = "greedy",
         layers: list[str] | None = None) -> pruning.SparsifyResult:
    cfg = _cfg(layers=layers)
    return pruning.sparsify(model, _data(), cfg, target_macs=ratio, plan=plan,  # type: ignore[arg-type]
                            cache=cache)


def test_the_second_call_reuses_the_greedy_plan_and_prunes_as_a_fresh_one() -> None:
    net, cache = _net(), pruning.CalibCache()
    first = _run(net, cache, 0.5)
    assert first.budget is not None and not first.budget["plan_reused"]
    assert cache.plans  # what the plan learnt, kept
    again = _run(net, cache, 0.5)
    assert again.budget is not None and again.budget["plan_reused"]
    assert again.budget["widths"] == first.budget["widths"]
    x = torch.randn(4, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(again.model(x), first.model(x))
    # another budget and fewer layers: the same plan serves, the budget is still met
    other = _run(net, cache, 0.35, layers=["3", "6"])
    assert other.budget is not None and other.budget["plan_reused"]
    assert set(other.budget["widths"]) == {"3", "6"}
    assert other.budget["within_tolerance"] or other.budget["reached_ratio"] <= 0.4


def test_units_not_planned_yet_are_planned_alone() -> None:
    net, cache = _net(), pruning.CalibCache()
    first = _run(net, cache, 0.6, layers=["3"])  # plans one unit
    assert first.budget is not None and first.budget["plan_units_reused"] == 0
    both = _run(net, cache, 0.5, layers=["3", "6"])  # reuses it, plans the other
    assert both.budget is not None and not both.budget["plan_reused"]
    assert both.budget["plan_units_reused"] == 1
    assert set(both.budget["widths"]) == {"3", "6"}
    assert both.budget["within_tolerance"] or both.budget["reached_ratio"] <= 0.55
    again = _run(net, cache, 0.5, layers=["3", "6"])
    assert again.budget is not None and again.budget["plan_reused"]


def test_an_entropic_plan_and_another_model_are_never_reused() -> None:
    net, cache = _net(), pruning.CalibCache()
    _run(net, cache, 0.5, plan="entropic")
    assert not cache.plans
    second = _run(net, cache, 0.5, plan="entropic")
    assert second.budget is not None and not second.budget["plan_reused"]
    _run(net, cache, 0.5)  # greedy: learnt now
    assert cache.plans
    other = _run(_net(seed=1), cache, 0.5)  # another model: refilled, planned again
    assert other.budget is not None and not other.budget["plan_reused"]
