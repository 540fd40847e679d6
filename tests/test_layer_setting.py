"""One layer setting (pruning.RegressionConfig) from the YAML to the solver: its rules hold in
one place and every error names the field it came from; a search trial meets the fixed path
in the same object, and a trial prunes at ``prune.eps_E`` unless eps_E is searched."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from bad_input_helpers import config

import pruning
from nas.config import ConfigError, config_from_dict
from nas.search import prepare
from nas.search_types import TrialContext
from nas.trial import evaluate_candidate, group_setting, layer_settings
from pruning import RegressionConfig
from search_spaces.space import decode_params

BAD_SETTINGS: list[tuple[str, Any, str]] = [
    ("eps_E", math.nan, "finite"),
    ("eps_E", math.inf, "finite"),
    ("eps_E", 1.5, "[-1, 1]"),
    ("eps_E", -2.0, "[-1, 1]"),
    ("eps_L2", 0.0, "> 0"),
    ("eps_L2", -0.1, "> 0"),
    ("eps_L2", math.nan, "> 0"),
    ("min_channels", 0, ">= 1"),
    ("min_channels", 1.5, "int"),
    ("tau", 1.5, "[0, 1]"),
    ("top_k", 0, ">= 1"),
    ("keep_ratio", 0.0, "(0, 1]"),
    ("keep_ratio", 1.2, "(0, 1]"),
]


@pytest.mark.parametrize("name,value,rule", BAD_SETTINGS)
def test_regression_config_refuses_and_names_the_field(name: str, value: Any, rule: str) -> None:
    with pytest.raises(ValueError, match=rf"RegressionConfig\.{name} .*{re.escape(rule)}"):
        RegressionConfig(**{name: value})


@pytest.mark.parametrize("eps_E", [-1.0, -1e-3, 0.0, 0.03, 1.0])
def test_eps_E_range_ends_are_valid(eps_E: float) -> None:
    assert RegressionConfig(eps_E=eps_E).eps_E == eps_E


def test_the_setting_is_immutable_and_defaults_live_in_one_place() -> None:
    s = RegressionConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.eps_L2 = 1.0  # type: ignore[misc]
    prune = config_from_dict(config(), source="c.yaml").prune
    assert prune.setting() == RegressionConfig()  # the YAML defaults are the setting's


def test_for_layer_resolves_the_layer_dependent_parts() -> None:
    s = RegressionConfig(keep_ratio=0.5, min_channels=3, top_k=None)
    assert s.for_layer(10).top_k == 5
    assert s.for_layer(4).top_k == 3  # at least min_channels
    assert s.for_layer(2).min_channels == 2 and s.for_layer(2).top_k == 2  # clamped to C
    assert RegressionConfig(top_k=9).for_layer(4).top_k == 4
    assert RegressionConfig(eps_L2=0.1).for_layer(4, eps_L2_factor=2.0).eps_L2 == 0.2
    assert s.for_layer(10).keep_ratio is None


YAML_CASES: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    ({"prune.eps_E": 5.0}, ("prune.eps_E", "[-1, 1]")),
    ({"prune.eps_L2": 0.0}, ("prune.eps_L2", "> 0")),
    ({"prune.min_channels": 0}, ("prune.min_channels", ">= 1")),
    ({"prune.top_k": 2, "prune.min_channels": 3}, ("prune", "top_k=2 < min_channels=3")),
    ({"search.space.eps_E": {"low": -2.0, "high": 0.0}}, ("search.space.eps_E", "low", "[-1, 1]")),
    ({"search.space.eps_L2": {"low": 0.0, "high": 1.0}}, ("search.space.eps_L2", "low", "> 0")),
    ({"search.space.keep_ratio": {"low": 0.5, "high": 1.5}},
     ("search.space.keep_ratio", "high")),
]


@pytest.mark.parametrize("changes,names", YAML_CASES)
def test_yaml_errors_name_the_yaml_field(changes: dict[str, Any], names: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(config(**changes), source="c.yaml")
    for name in names:
        assert name in str(info.value)


def test_layer_overrides_are_validated_naming_the_layer() -> None:
    with pytest.raises(ValueError, match=r"layer_overrides\['fc1'\]: RegressionConfig\.eps_E"):
        pruning.SparsifyConfig(layer_overrides={"fc1": {"eps_E": 3.0}})
    with pytest.raises(ValueError, match=r"SparsifyConfig\.min_channels: .*min_channels"):
        pruning.SparsifyConfig(min_channels=0)
    cfg = pruning.SparsifyConfig(min_channels=4)
    assert cfg.regression.min_channels == 4  # the shorthand lands in the one setting


def test_a_bad_sampled_value_names_the_space_field_and_trial_param() -> None:
    with pytest.raises(ConfigError, match=r"search\.space\.eps_E \(trial param conv\.eps_E\)"):
        group_setting(RegressionConfig(), "conv", {"eps_L2": 0.1, "eps_E": 4.0})
    s = group_setting(RegressionConfig(eps_E=-2e-3), "conv", {"eps_L2": 0.1, "tau": 0.1})
    assert (s.eps_E, s.eps_L2, s.tau) == (-2e-3, 0.1, 0.1)


def _trial_widths(tmp_path: Path, **changes: Any) -> tuple[dict[str, int], Any]:
    cfg = config_from_dict(config(**{"train.epochs": 2, "search.space.prune_group_prob": 1.0,
                                     **changes}), source="c.yaml")
    setup = prepare(cfg, tmp_path / "run", progress=False)
    params = {f"{g.name}.{k}": v for g in setup.space.groups
              for k, v in (("eps_L2", 1.0), ("eps_E", -3e-3), ("tau", 0.05))}
    tp = decode_params(params, setup.space)
    ctx = TrialContext(0, tmp_path / "trial", tmp_path, "optuna")
    res = evaluate_candidate(params, ctx, setup=setup)
    return res.attrs["widths"], layer_settings(tp, setup)


def test_a_search_trial_prunes_at_prune_eps_E(tmp_path: Path) -> None:
    """prune.eps_E reaches the solver of a trial (it never did: every group's sampled eps_E
    replaced it): the same trial params (which hold a stale ``<group>.eps_E``, ignored while
    the space does not search eps_E) prune far less at prune.eps_E = 1 (the entropy term
    holds w near uniform) than at -1e-3."""
    torch.manual_seed(0)
    full, settings = _trial_widths(tmp_path / "a", **{"prune.eps_E": 1.0})
    assert settings and all(s.eps_E == 1.0 and s.eps_L2 == 1.0 for s in settings.values())
    default = pruning.SparsifyConfig().regression
    assert all(dataclasses.replace(s, eps_E=default.eps_E, eps_L2=default.eps_L2) == default
               for s in settings.values())
    pruned, _ = _trial_widths(tmp_path / "b", **{"prune.eps_E": -1e-3})
    assert sum(pruned.values()) < sum(full.values())  # measured: 26 vs 168 of 176 channels


def test_a_searched_eps_E_replaces_prune_eps_E(tmp_path: Path) -> None:
    _, settings = _trial_widths(tmp_path, **{"prune.eps_E": 1.0,
                                             "search.space.eps_E": {"low": -3e-3, "high": 0.0}})
    assert settings and all(s.eps_E == -3e-3 for s in settings.values())
