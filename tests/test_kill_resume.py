"""The budget under kill -9: N trials asked -> N COMPLETE, however often the search is killed.

A real worker process (the tiny synthetic search of ``search_helpers``) is SIGKILLed at
different points - inside a trial, inside the retry of a killed trial (twice in a row), and
at start-up - and resumed each time; the study ends with exactly N COMPLETE trials, every
killed trial has exactly one retry with its parameters, and every recorded checkpoint loads.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import search_helpers as h
from kill_helpers import REPO, trial_states, worker_script
from optuna.trial import TrialState

from nas.backends.optuna import run_optuna
from nas.pareto import load_records
from nas.study import counted_trials, needs_retry, retried_numbers

KILLS = max(4, int(os.environ.get("ENTROPIC_NAS_TEST_KILLS", "4")))  # 10 for the target


def _start(script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait_for_new_running(db: Path, proc: subprocess.Popen[bytes], seen: int,
                          timeout: float = 180) -> int:
    """Wait until a trial numbered >= ``seen`` is RUNNING; returns its number."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the worker exited before it could be killed"
        running = [n for n, s in trial_states(db) if s == "RUNNING" and n >= seen]
        if running:
            return max(running)
        time.sleep(0.05)
    raise AssertionError("no new trial started")


@pytest.mark.slow
def test_kill_9_repeatedly_still_ends_with_n_complete(tmp_path: Path) -> None:
    n = max(4, KILLS // 2)
    db = tmp_path / "study.db"
    script = worker_script(tmp_path, n_trials=n, seconds=1.5)
    rng = random.Random(int(os.environ.get("ENTROPIC_NAS_TEST_SEED", "12")))
    seen = 0
    killed_in_trial = []
    for _ in range(3):  # inside a trial: the first, then its retry, then the retry's retry
        proc = _start(script)
        number = _wait_for_new_running(db, proc, seen)
        time.sleep(rng.uniform(0.0, 1.0))
        _kill(proc)
        killed_in_trial.append(number)
        seen = number + 1
    for _ in range(KILLS - 3):  # at random points: start-up, recovery, sampling, a trial
        proc = _start(script)
        time.sleep(rng.uniform(0.5, 6.0))
        _kill(proc)

    url = f"sqlite:///{db}"
    states = dict(trial_states(db))
    assert all(states[k] in ("RUNNING", "FAIL") for k in killed_in_trial), states
    study = run_optuna(study_name="k", storage=None, objectives=h.OBJECTIVES, sample=h.sample,
                       evaluate=h.evaluate, n_trials=n, run_dir=tmp_path, sampler="random",
                       seed=0, resume=True)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n, [(t.number, t.state.name) for t in trials]
    assert counted_trials(trials) == n
    # every killed trial FAILed and has exactly one retry with its parameters
    retried = retried_numbers(trials)
    for t in trials:
        assert t.state in (TrialState.COMPLETE, TrialState.FAIL), (t.number, t.state)
        if t.state == TrialState.FAIL:
            assert needs_retry(t)
            if not t.params:  # killed before sampling: no candidate to retry
                assert t.number not in retried
                continue
            assert t.number in retried
            children = [c for c in trials if c.system_attrs.get("retry_history", [None])[-1]
                        == t.number]
            assert len(children) == 1 and children[0].params == t.params
    assert set(killed_in_trial) <= {t.number for t in trials if t.state == TrialState.FAIL}
    # the second and third kills hit retries: retry chains of length >= 2
    assert max(len(t.system_attrs.get("retry_history", [])) for t in trials) >= 2
    for r in load_records(url, "k"):
        if r.state == "COMPLETE":
            model, spec = h.load_trial_model(r)
            assert model(h.synthetic_data()[2][:2]).shape == (2, spec.num_classes)


def test_kill_between_fail_and_requeue_is_repaired(tmp_path: Path) -> None:
    """A trial marked FAIL (killed) whose re-queue never happened gets it on the next start."""
    run_optuna(study_name="k", storage=None, objectives=h.OBJECTIVES, sample=h.sample,
               evaluate=h.evaluate, n_trials=1, run_dir=tmp_path, sampler="random", seed=0)
    study = optuna.load_study(study_name="k", storage=f"sqlite:///{tmp_path / 'study.db'}")
    done = study.trials[0]
    params = {"conv1": 3, "conv2": 5, "conv3": 7, "fc1": 9}
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, params=params, distributions=done.distributions,
        user_attrs={"error": "worker died", "requeue": True}))
    assert counted_trials(study.get_trials()) == 1  # the killed trial does not count
    study = run_optuna(study_name="k", storage=None, objectives=h.OBJECTIVES, sample=h.sample,
                       evaluate=h.evaluate, n_trials=2, run_dir=tmp_path, sampler="random",
                       seed=0, resume=True)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == params and trials[2].system_attrs["retry_history"] == [1]
    # resuming again queues nothing twice
    run_optuna(study_name="k", storage=None, objectives=h.OBJECTIVES, sample=h.sample,
               evaluate=h.evaluate, n_trials=2, run_dir=tmp_path, sampler="random", seed=0,
               resume=True)
    assert len(optuna.load_study(study_name="k", storage=study._storage).trials) == 3


def test_candidate_failure_counts_but_kill_does_not(tmp_path: Path) -> None:
    """A FAIL raised by the candidate is a verdict (counts); a kill is not (is retried)."""
    run_optuna(study_name="k", storage=None, objectives=h.OBJECTIVES, sample=h.sample,
               evaluate=h.evaluate, n_trials=1, run_dir=tmp_path, sampler="random", seed=0)
    study = optuna.load_study(study_name="k", storage=f"sqlite:///{tmp_path / 'study.db'}")
    dist = study.trials[0].distributions
    p = dict(study.trials[0].params)
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params=p, distributions=dist,
                                              user_attrs={"error": "ValueError: bad candidate"}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params=p, distributions=dist))
    trials = study.get_trials()
    assert [needs_retry(t) for t in trials] == [False, False, True]
    assert counted_trials(trials) == 2
    assert counted_trials(trials, max_retry=0) == 3
