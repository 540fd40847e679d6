"""A post-training search (search.accuracy: recovered): each trial is the pass, the
configured recovery step (guarded on validation) and a validation pass - no fine-tune, no
scratch run - and its accuracy objective is the recovered net's; the config refuses the
objective without a recovery step."""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_input_helpers import config

import nas
from nas.config import ConfigError, config_from_dict
from nas.pareto import load_records

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # T < d on tiny calibration


def test_each_trial_is_scored_after_its_recovery(tmp_path: Path) -> None:
    cfg = nas.RunConfig.model_validate(config(**{
        "name": "pts", "search.accuracy": "recovered", "search.trials": 2,
        "prune.target_macs": 0.5, "finetune.epochs": 0,
        "recovery": {"mode": "distill", "steps": 3, "lr": 0.01}}))
    summary = nas.run_search(cfg, tmp_path / "run", progress=False)
    assert summary["trials"]["COMPLETE"] == 2
    for rec in load_records(f"sqlite:///{tmp_path / 'run' / 'study.db'}", "pts"):
        assert rec.attrs["recovery"]["mode"] == "distill"
        assert rec.values["accuracy"] == pytest.approx(rec.attrs["acc_recovered"])
        assert rec.attrs["recovery"]["kept"] in ("recovered", "before")
        if rec.attrs["recovery"]["kept"] == "before":  # the guard undid a worse step
            assert rec.attrs["acc_recovered"] == pytest.approx(rec.attrs["acc_pruned"])


def test_a_greedy_plan_is_planned_once_per_worker(tmp_path: Path) -> None:
    cfg = nas.RunConfig.model_validate(config(**{
        "name": "ptg", "search.accuracy": "pruned", "search.trials": 3,
        "prune.target_macs": 0.5, "prune.plan": "greedy", "finetune.epochs": 0,
        "scratch.enabled": False}))
    summary = nas.run_search(cfg, tmp_path / "run", progress=False)
    assert summary["trials"]["COMPLETE"] == 3
    records = sorted(load_records(f"sqlite:///{tmp_path / 'run' / 'study.db'}", "ptg"),
                     key=lambda r: r.number)
    reused = [r.attrs["budget"]["plan_reused"] for r in records]
    assert reused[0] is False and all(reused[1:]), reused
    # no regression setting changes such a trial: none is sampled
    assert all(not any(k.endswith(("eps_L2", "eps_E", "tau", "keep_ratio")) for k in r.params)
               for r in records)


def test_the_objective_needs_a_recovery_step() -> None:
    with pytest.raises(ConfigError, match="recovery.mode"):
        config_from_dict(config(**{"search.accuracy": "recovered"}))
