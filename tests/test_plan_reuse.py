"""The greedy plan is learnt once per model and data, not once per call.

``plan="greedy"`` ranks every unit on the unpruned network's inputs (its plan pass keeps every
channel), so what it learns does not depend on the call's budget or on which other layers the
call prunes: a search's trials share it through the calibration cache. The second budgeted
call reuses it (no plan pass, the same allocation and network as a fresh cache gives); an
entropic plan, whose rankings depend on the call's strengths, is never reused; another
model's cache is never read.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pruning

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # T < d on tiny calibration


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                         nn.Conv2d(12, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4)).eval()


def _data() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(8, 3, 10, 10, generator=g) for _ in range(4)]


def _run(model: nn.Module, cache: pruning.CalibCache, ratio: float, plan: str = "greedy",
         layers: list[str] | None = None) -> pruning.SparsifyResult:
    cfg = pruning.SparsifyConfig(progress=False, layers=layers)
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
