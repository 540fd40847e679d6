"""The cost-aware strengths' exponent as a search dimension (``search.space.cost_exponent``):
sampled once per trial, passed to the engine in place of ``prune.cost_exponent``, recorded
in the trial's attributes, and validated naming the field."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from bad_input_helpers import config

from nas.config import ConfigError, config_from_dict
from nas.search import prepare
from nas.search_types import TrialContext
from nas.trial import evaluate_candidate
from search_spaces.space import Range, decode_params, default_space, sample_params


def test_the_sampler_picks_one_exponent_per_trial_only_when_the_space_has_a_range() -> None:
    space = default_space("small_cnn")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plain = sample_params(study.ask(), space)
    assert "cost_exponent" not in plain
    assert decode_params(plain, space).cost_exponent is None
    searched = dataclasses.replace(space, cost_exponent=Range(0.0, 1.0))
    values = [sample_params(study.ask(), searched)["cost_exponent"] for _ in range(20)]
    assert all(0.0 <= v <= 1.0 for v in values) and len(set(values)) == 20
    params = sample_params(study.ask(), searched)
    assert decode_params(params, searched).cost_exponent == params["cost_exponent"]
    # a stale value in the params is ignored while the space does not search it
    assert decode_params({**plain, "cost_exponent": 0.7}, space).cost_exponent is None


def test_the_config_range_reaches_the_search_space(tmp_path: Path) -> None:
    cfg = config_from_dict(config(**{"search.space.cost_exponent": {"low": 0.0, "high": 1.0}}),
                           source="c.yaml")
    setup = prepare(cfg, tmp_path / "run", progress=False)
    assert setup.space.cost_exponent == Range(0.0, 1.0, False)


@pytest.mark.parametrize("bad,rule", [({"low": 0.0, "high": math.inf}, "finite"),
                                      ({"low": 1.0, "high": 0.0}, "low"),
                                      ({"low": 0.0, "high": 1.0, "log": True}, "low > 0")])
def test_a_bad_range_names_the_field(bad: dict[str, Any], rule: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(config(**{"search.space.cost_exponent": bad}), source="c.yaml")
    assert "search.space.cost_exponent" in str(info.value) and rule in str(info.value)


def _trial(tmp_path: Path, exponent: float | None, **changes: Any) -> dict[str, Any]:
    cfg = config_from_dict(config(**{"train.epochs": 2, "search.space.prune_group_prob": 1.0,
                                     **changes}), source="c.yaml")
    setup = prepare(cfg, tmp_path / "run", progress=False)
    params: dict[str, Any] = {f"{g.name}.{k}": v for g in setup.space.groups
                              for k, v in (("eps_L2", 0.3), ("tau", 0.05))}
    if exponent is not None:
        params["cost_exponent"] = exponent
    ctx = TrialContext(0, tmp_path / "trial", tmp_path, "optuna")
    return evaluate_candidate(params, ctx, setup=setup).attrs


def test_a_trial_prunes_with_its_sampled_exponent(tmp_path: Path) -> None:
    """Same pre-trained net, same strengths: the exponent the trial sampled changes which
    channels go (MACs-priced: the costly conv channels are penalised more), and the trial
    records the exponent it used; without a range the trial keeps prune.cost_exponent."""
    searched = {"search.space.cost_exponent": {"low": 0.0, "high": 3.0},
                "prune.cost_currency": "macs"}
    flat = _trial(tmp_path / "a", 0.0, **searched)
    priced = _trial(tmp_path / "b", 3.0, **searched)
    assert flat["cost_exponent"] == 0.0 and priced["cost_exponent"] == 3.0
    assert priced["widths"] != flat["widths"]
    fixed = _trial(tmp_path / "c", 3.0, **{"prune.cost_exponent": 0.5})  # not searched
    assert fixed["cost_exponent"] == 0.5
