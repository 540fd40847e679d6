"""The budgeted pass's defaults: the greedy plan (measured better than the entropic plan on
every fast-family cell) and its own ranking (choosing again greedily tied it at twice the
cost), the entropic plan and the greedy reselection on request, the same choices from the
config, and configs written before the change still valid."""

from __future__ import annotations

import pytest
import torch

import pruning
from nas.config import PruneSection, RunConfig
from nas.testing import calibration_batches, check_builds, small_spec

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # T < d on tiny calibration


def _setup() -> tuple[torch.nn.Module, list[torch.Tensor], pruning.SparsifyConfig]:
    spec = small_spec("small_cnn")
    return (check_builds(spec), calibration_batches(spec, images=32, batch_size=8),
            pruning.SparsifyConfig(progress=False, calib_positions_per_image=6, seed=0))


def test_a_budget_plans_greedily_and_keeps_the_plans_ranking_by_default() -> None:
    model, calib, cfg = _setup()
    res = pruning.sparsify(model, calib, cfg, target_macs=0.5)
    assert res.budget is not None
    assert (res.budget["plan"], res.budget["selection"]) == ("greedy", "plan")
    explicit = pruning.sparsify(model, calib, cfg, target_macs=0.5, plan="greedy",
                                selection="plan")
    assert [r.kept_indices for r in res.report] == [r.kept_indices for r in explicit.report]


def test_the_entropic_plan_and_the_greedy_reselection_on_request() -> None:
    model, calib, cfg = _setup()
    entropic = pruning.sparsify(model, calib, cfg, target_macs=0.5, plan="entropic")
    assert entropic.budget is not None
    assert (entropic.budget["plan"], entropic.budget["selection"]) == ("entropic", "plan")
    again = pruning.sparsify(model, calib, cfg, target_macs=0.5,
                             selection=pruning.GreedyReconstruction)
    assert again.budget is not None
    assert (again.budget["plan"], again.budget["selection"]) == ("greedy",
                                                                 "GreedyReconstruction")
    # the same plan and allocation as the default: only the final choice of channels differs
    assert again.budget["widths"] == pruning.sparsify(
        model, calib, cfg, target_macs=0.5).budget["widths"]  # type: ignore[index]


def test_plan_or_selection_without_a_budget_is_refused() -> None:
    model, calib, cfg = _setup()
    for kw in ({"plan": "greedy"}, {"plan": "entropic"}, {"selection": "plan"}):
        with pytest.raises(ValueError, match="act on a budget"):
            pruning.sparsify(model, calib, cfg, **kw)  # type: ignore[arg-type]


def _run(prune: dict[str, object]) -> RunConfig:
    return RunConfig.model_validate({"name": "d", "model": {"family": "small_cnn"},
                                     "data": {"name": "synthetic"}, "prune": prune})


def test_the_config_gives_the_same_choices() -> None:
    assert (PruneSection().plan, PruneSection().selection) == ("greedy", "auto")
    kw = _run({"target_macs": 0.5}).prune.selection_kwargs()
    assert kw == {"plan": "greedy"}  # sparsify's default selection (the plan's ranking)
    kw = _run({"target_macs": 0.5, "plan": "entropic", "selection": "entropic"}).prune \
        .selection_kwargs()
    assert kw == {"plan": "entropic", "selection": "plan"}
    kw = _run({"target_macs": 0.5, "selection": "lasso"}).prune.selection_kwargs()
    assert kw == {"plan": "greedy", "selection": pruning.LassoSelection}


def test_configs_written_before_the_greedy_default_still_load() -> None:
    # every config.yaml written before held plan: entropic and selection: entropic, with or
    # without a budget; they load and keep their meaning
    old = _run({"plan": "entropic", "selection": "entropic"})
    assert (old.prune.plan, old.prune.selection) == ("entropic", "entropic")
    # and a run's own config.yaml (every field written out) loads again to resume
    new = _run({})
    assert RunConfig.model_validate(new.model_dump(mode="json")) == new
    with pytest.raises(ValueError, match="prune.selection='lasso' acts on a budget"):
        _run({"selection": "lasso"})


@pytest.mark.parametrize(("prune", "schedules", "sampled"), [
    ({"target_macs": 0.5}, ["one_shot"], ()),  # the greedy plan ranks on unpruned inputs
    ({"target_macs": 0.5}, ["one_shot", "iterative"], ("strengths", "widths")),
    ({"target_macs": 0.5, "plan": "entropic"}, ["one_shot"], ("strengths", "widths")),
    ({}, ["one_shot"], ("strengths", "widths")),  # no budget: the entropic pass
])
def test_a_search_samples_the_strengths_only_where_they_change_the_result(
        prune: dict[str, object], schedules: list[str], sampled: tuple[str, ...]) -> None:
    from nas.search import search_space

    cfg = RunConfig.model_validate({"name": "d", "model": {"family": "small_cnn"},
                                    "data": {"name": "synthetic"}, "prune": prune,
                                    "search": {"space": {"schedules": schedules}}})
    assert search_space(cfg, []).settings == sampled
