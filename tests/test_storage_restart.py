"""A PostgreSQL restart mid-search (``pg_ctl stop -m fast``, every connection dropped and new
ones refused for a while, then ``start``) costs no finished trial and no retry: the storage
reconnects with backoff, so the study ends with exactly N complete trials, none failed, none
left waiting."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.backends.optuna import run_optuna
from nas.search_types import Objective, TrialResult

pytestmark = pytest.mark.slow


def _sample(trial: optuna.trial.BaseTrial) -> dict[str, float]:
    return {"x": trial.suggest_float("x", -1.0, 1.0)}


def test_a_server_restart_mid_search_loses_no_trial(pg_server, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="nas.backends.optuna")
    url = pg_server.createdb("restart")
    restarted: list[int] = []

    def evaluate(params: dict[str, float], ctx) -> TrialResult:
        if ctx.number in (2, 5):  # the server goes down under a running trial ...
            pg_server.restart(down_s=2.0)
            restarted.append(ctx.number)
        time.sleep(0.2)
        return TrialResult({"loss": params["x"] ** 2, "cost": abs(params["x"])}, {})

    objectives = [Objective("loss", "minimize"), Objective("cost", "minimize")]
    study = run_optuna(study_name="s", storage=url, objectives=objectives, sample=_sample,
                       evaluate=evaluate, n_trials=8, run_dir=tmp_path, sampler="random",
                       heartbeat_interval=1, grace_period=30)
    assert restarted == [2, 5]
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE] * 8, [(t.number, t.state) for t in trials]
    assert all("retry_history" not in t.system_attrs for t in trials)
    said = caplog.text
    assert "lost the connection to the study database" in said  # the restart did hit it
    assert "reachable again" in said


def test_a_restart_between_trials_while_the_heartbeat_runs(pg_server, tmp_path: Path) -> None:
    """... and while nothing but the heartbeat thread talks to it."""
    url = pg_server.createdb("restart_idle")
    started = threading.Event()

    def evaluate(params: dict[str, float], ctx) -> TrialResult:
        if ctx.number == 1:
            started.set()
            time.sleep(4.0)  # the restart happens now, under the heartbeat's writes
        return TrialResult({"loss": params["x"] ** 2}, {})

    def restart_while_idle() -> None:
        started.wait(60)
        time.sleep(1.0)
        pg_server.restart()

    t = threading.Thread(target=restart_while_idle)
    t.start()
    study = run_optuna(study_name="s", storage=url, objectives=[Objective("loss", "minimize")],
                       sample=_sample, evaluate=evaluate, n_trials=4, run_dir=tmp_path,
                       sampler="random", heartbeat_interval=1, grace_period=30)
    t.join(90)
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.COMPLETE] * 4


def test_the_cli_search_survives_a_restart(pg_server, tmp_path: Path) -> None:
    """The whole search (pre-training, trials, front, export) from the CLI, the server
    restarted under its second trial: exit 0, every trial COMPLETE, nothing re-queued."""
    from bad_input_helpers import config, write_config

    from nas.cli import main
    from nas.pareto import load_records

    url = pg_server.createdb("restart_cli")
    cfg = write_config(tmp_path / "c.yaml", config(**{"name": "rcli", "search.trials": 4}))
    out = tmp_path / "run"
    stop = threading.Event()

    def restart_under_trial_1() -> None:
        while not stop.is_set():
            if (out / "trials" / "1").exists():
                pg_server.restart(down_s=2.0)
                return
            time.sleep(0.05)

    t = threading.Thread(target=restart_under_trial_1)
    t.start()
    try:
        code = main(["search", "--config", str(cfg), "--out", str(out), "--storage", url])
    finally:
        stop.set()
        t.join(120)
    assert code == 0
    assert [r.state for r in load_records(url, "rcli")] == ["COMPLETE"] * 4
    assert json.loads((out / "summary.json").read_text())["trials"]["COMPLETE"] == 4


class _DbError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("sqlstate", "retried"), [
    (None, True),       # connection refused: no SQLSTATE (client side)
    ("08006", True),    # connection failure
    ("57P01", True),    # admin shutdown (pg_ctl stop -m fast)
    ("40P01", False),   # deadlock: not a lost connection
    ("57014", False),   # statement timeout
    ("53100", False),   # disk full
    ("28P01", False),   # bad password
])
def test_only_a_lost_connection_is_retried(sqlstate: str | None, retried: bool) -> None:
    from sqlalchemy.exc import OperationalError

    from nas.study import connection_lost

    err = OperationalError("SELECT 1", {}, _DbError(sqlstate))
    assert connection_lost(err) is retried
    try:  # as Optuna raises it: a StorageInternalError from the SQLAlchemy error
        raise optuna.exceptions.StorageInternalError("commit failed") from err
    except optuna.exceptions.StorageInternalError as wrapped:
        assert connection_lost(wrapped) is retried
    assert not connection_lost(ValueError("bad data"))
