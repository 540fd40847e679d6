"""Every latency of a run (search.cost=latency, search.max_latency_ms, a latency budget) is
timed where the user deploys, as the one ``latency:`` section says (device, batch_size,
threads); the conditions are recorded with every trial's number, a bad or absent device is
refused naming the field, and the keys of the two old places name the new one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from bad_input_helpers import assert_refused, config, run_cli, write_config

import pruning
from nas.config import ConfigError, config_from_dict
from nas.search import prepare
from nas.search_types import TrialContext
from nas.trial import evaluate_candidate
from nas.validate import InputError, check_config


def _trial_attrs(tmp_path: Path, **changes: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = config_from_dict(config(**{"search.space.prune_group_prob": 1.0, **changes}),
                           source="c.yaml")
    setup = prepare(cfg, tmp_path / "run", progress=False)
    params = {f"{g.name}.{k}": v for g in setup.space.groups
              for k, v in (("eps_L2", 0.3), ("tau", 0.05))}
    ctx = TrialContext(0, tmp_path / "trial", tmp_path, "optuna")
    return setup.base_metrics, evaluate_candidate(params, ctx, setup=setup).attrs


def test_latency_is_timed_at_the_configured_batch_and_threads(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    base, attrs = _trial_attrs(tmp_path, **{"search.cost": "latency",
                                            "latency.batch_size": 16,
                                            "latency.threads": 1})
    assert base["latency"]["batch_size"] == 16 and base["latency"]["threads"] == 1
    lat = attrs["latency"]
    assert (lat["batch_size"], lat["threads"], lat["device"]) == (16, 1, "cpu")
    assert lat["median_ms"] > 0
    assert torch.get_num_threads() == threads  # restored after every measurement


def test_max_latency_uses_the_same_conditions(tmp_path: Path) -> None:
    _, attrs = _trial_attrs(tmp_path, **{"search.max_latency_ms": 1e6,
                                         "latency.batch_size": 4})
    assert attrs["latency"]["batch_size"] == 4


def test_without_latency_nothing_is_timed(tmp_path: Path) -> None:
    _, attrs = _trial_attrs(tmp_path)
    assert "latency" not in attrs


@pytest.mark.parametrize("field,value,rule", [
    ("device", "gpu", "pattern"),
    ("batch_size", 0, "greater than 0"),
    ("threads", 0, "greater than 0"),
])
def test_bad_latency_fields_name_the_field(field: str, value: Any, rule: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(config(**{f"latency.{field}": value}), source="c.yaml")
    assert f"latency.{field}" in str(info.value) and rule in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a node without CUDA")
def test_a_cuda_latency_device_on_a_node_without_one_fails_before_work(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cfg = config_from_dict(config(**{"search.cost": "latency", "latency.device": "cuda"}),
                           source="c.yaml")
    with pytest.raises(InputError, match=r"latency\.device 'cuda': no such CUDA device"):
        check_config(cfg, source="c.yaml", search=True)
    # not timed: the device is never used, so the config is fine
    check_config(config_from_dict(config(**{"latency.device": "cuda"}), source="c.yaml"),
                 source="c.yaml", search=True)
    path = write_config(tmp_path / "c.yaml", config(**{"search.cost": "latency",
                                                       "latency.device": "cuda:0"}))
    code, text = run_cli(["search", "--config", path, "--out", tmp_path / "out"], capfd)
    assert_refused(code, text, "latency.device")
    assert not (tmp_path / "out").exists()


def test_ray_trials_and_the_driver_time_with_the_same_threads() -> None:
    cfg = config_from_dict(config(**{"search.backend": "ray", "search.cpus_per_trial": 2,
                                     "search.cost": "latency"}), source="c.yaml")
    assert cfg.latency_kwargs()["threads"] == 2  # what a Ray trial sets
    cfg = config_from_dict(config(**{"search.backend": "ray", "latency.threads": 3}),
                           source="c.yaml")
    assert cfg.latency_kwargs()["threads"] == 3


def _pretend_one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # this CPU machine has no CUDA: the device-count rules are all that is exercised here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize("changes,names", [
    ({"latency.device": "cuda:1"}, ("latency.device 'cuda:1'", "1 visible")),
    ({"search.backend": "ray", "latency.device": "cuda"},
     ("search.gpus_per_trial > 0",)),
    ({"search.backend": "ray", "search.gpus_per_trial": 1, "latency.device": "cuda:0",
      "search.cpus_per_trial": 1}, ()),  # accepted
])
def test_cuda_latency_rules(monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any],
                            names: tuple[str, ...]) -> None:
    _pretend_one_gpu(monkeypatch)
    cfg = config_from_dict(config(**{"search.cost": "latency", **changes}), source="c.yaml")
    if not names:
        check_config(cfg, source="c.yaml", search=True)
        return
    with pytest.raises(InputError) as info:
        check_config(cfg, source="c.yaml", search=True)
    for name in names:
        assert name in str(info.value)


def test_a_latency_budget_is_timed_as_the_ranking_is() -> None:
    from nas.trial import trial_budget

    cfg = config_from_dict(config(**{"search.cost": "latency", "prune.target_latency_ms": 1.5,
                                     "latency.batch_size": 8, "latency.threads": 1}),
                           source="c.yaml")
    budget = trial_budget(cfg, {"macs": 1000, "params": 100})
    assert budget is not None and budget.value == 1.5  # ms: never a ratio
    assert budget.currency == pruning.Latency("cpu", 8, 1)
    assert cfg.latency_kwargs() == {"device": "cpu", "batch_size": 8, "threads": 1}


def _as_written_before(cfg: Any, **old: Any) -> dict[str, Any]:
    """``cfg`` dumped as a run wrote its config.yaml before the latency section: every old
    key present (at its default unless given), no latency section."""
    raw = cfg.model_dump(mode="json")
    raw.pop("latency")
    raw["prune"].update({"latency_device": None, "latency_batch_size": 1, "latency_threads": None})
    raw["search"].update({"latency_device": "cpu", "latency_batch_size": 1,
                          "latency_threads": None})
    for key, value in old.items():
        section, name = key.split(".")
        raw[section][name] = value
    return raw


def test_configs_from_before_the_latency_section_still_load(tmp_path: Path) -> None:
    from nas.config import load_config, migrate_config_dict
    from nas.validate import check_run_identity

    today = config_from_dict(config(), source="c.yaml")
    # the old keys at their defaults are dropped: the same run as today's config
    old = _as_written_before(today)
    assert "latency" not in migrate_config_dict(old)
    write_config(tmp_path / "config.yaml", old)
    loaded = load_config(tmp_path / "config.yaml")
    assert loaded.latency_kwargs() == today.latency_kwargs()
    check_run_identity(today, tmp_path)  # an old run directory resumes
    # set ones move to the latency section; a run that timed otherwise is another run
    old = _as_written_before(today, **{"prune.latency_batch_size": 8,
                                       "search.latency_threads": 1})
    assert migrate_config_dict(old)["latency"] == {"batch_size": 8, "threads": 1}
    write_config(tmp_path / "config.yaml", old)
    moved = load_config(tmp_path / "config.yaml")
    assert (moved.latency.batch_size, moved.latency.threads) == (8, 1)
    check_run_identity(moved, tmp_path)
    with pytest.raises(InputError, match="differs in latency"):
        check_run_identity(today, tmp_path)


@pytest.mark.parametrize("changes", [
    {"prune.latency_batch_size": 8, "search.latency_batch_size": 4},
    {"search.latency_threads": 2, "latency.threads": 3},
])
def test_old_latency_keys_that_disagree_are_refused_naming_both(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(config(**changes), source="c.yaml")
    for key in changes:
        assert key in str(info.value)


def test_the_prune_job_times_a_latency_budget_with_its_own_threads() -> None:
    cfg = config_from_dict(config(**{"search.backend": "ray", "search.cpus_per_trial": 2,
                                     "prune.target_latency_ms": 1.0}), source="c.yaml")
    search_budget, prune_budget = cfg.budget(), cfg.budget(search=False)
    assert search_budget is not None and prune_budget is not None
    assert search_budget.currency == pruning.Latency("cpu", 1, 2)  # a Ray trial's CPUs
    assert prune_budget.currency == pruning.Latency("cpu", 1, None)  # the process's


def test_resuming_with_other_latency_conditions_is_refused(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    first = {"search.cost": "latency", "latency.batch_size": 2,
             "latency.threads": 1}
    path = write_config(tmp_path / "c.yaml", config(**first))
    out = tmp_path / "out"
    code, text = run_cli(["search", "--config", path, "--out", out, "--no-wandb"], capfd)
    assert code == 0, text
    path = write_config(tmp_path / "c.yaml", config(**{**first, "latency.batch_size": 4,
                                                       "search.trials": 2}))
    code, text = run_cli(["search", "--config", path, "--out", out, "--no-wandb", "--resume"],
                         capfd)
    assert_refused(code, text, "latency.device / batch_size / threads", "batch 2", "batch 4")
    path = write_config(tmp_path / "c.yaml", config(**{**first, "search.trials": 2}))
    code, text = run_cli(["search", "--config", path, "--out", out, "--no-wandb", "--resume"],
                         capfd)
    assert code == 0, text
