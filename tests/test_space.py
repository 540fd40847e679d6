"""Search knobs: sampled params decode into per-group settings; prune_group_prob is honoured."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import optuna
import pytest

from search_spaces.space import Range, TrialParams, decode_params, default_space, sample_params

EPS_E = Range(-3e-3, 0.0)


def _sample(prob: float, n: int, **changes: Any) -> list[TrialParams]:
    space = replace(default_space("vgg16_cifar"), prune_group_prob=prob, **changes)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        params = sample_params(trial, space)
        out.append(params)
        study.tell(trial, 0.0)
    return [decode_params(p, space) for p in out]


def test_prune_group_prob_is_the_fraction_of_pruned_groups() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    decoded = _sample(0.9, 60)
    flags = [g.prune for tp in decoded for g in tp.groups.values()]
    assert 0.83 <= sum(flags) / len(flags) <= 0.97
    assert all(g.prune for tp in _sample(1.0, 5) for g in tp.groups.values())


def test_every_group_gets_its_own_eps() -> None:
    space = default_space("vgg16_cifar")
    tp = _sample(1.0, 1, eps_E=EPS_E)[0]
    assert set(tp.groups) == {g.name for g in space.groups}
    for gp in tp.groups.values():
        assert set(gp.setting) == {"eps_L2", "eps_E", "tau"}
        assert space.eps_L2.low <= gp.setting["eps_L2"] <= space.eps_L2.high
        assert EPS_E.low <= gp.setting["eps_E"] <= EPS_E.high


def test_eps_E_is_searched_only_with_a_range() -> None:
    """Without a range no trial samples eps_E (the run's fixed value applies), and a stored
    eps_E param of another space is not read back."""
    assert default_space("vgg16_cifar").eps_E is None
    tp = _sample(1.0, 1)[0]
    assert all(set(gp.setting) == {"eps_L2", "tau"} for gp in tp.groups.values())
    space = default_space("lenet5", groups="all")
    params = {"all.eps_L2": 0.1, "all.eps_E": -2e-3, "all.tau": 0.05}
    assert decode_params(params, space).groups["all"].setting == {"eps_L2": 0.1, "tau": 0.05}
    searched = replace(space, eps_E=EPS_E)
    assert decode_params(params, searched).groups["all"].setting["eps_E"] == -2e-3


def test_residual_keys_can_be_excluded() -> None:
    space = default_space("resnet18_cifar", exclude_keys=[f"stage{i}" for i in range(1, 5)])
    assert "residual" not in {g.name for g in space.groups}
    with pytest.raises(ValueError, match="search.space.groups"):
        default_space("lenet5", groups="bogus")
