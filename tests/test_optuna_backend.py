"""The Optuna engine on a real SQLite study with a real (tiny) model evaluation."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import search_helpers as h

from nas.backends.optuna import run_optuna
from nas.pareto import load_records
from nas.study import StudyExistsError, counted_trials
from pruning.measure import count_macs


def _run(tmp_path: Path, n_trials: int, *, resume: bool = False, evaluate=h.evaluate,
         seen: list | None = None) -> optuna.Study:
    return run_optuna(
        study_name="t", storage=None, objectives=h.OBJECTIVES, sample=h.sample,
        evaluate=evaluate, n_trials=n_trials, run_dir=tmp_path, sampler="nsga2", seed=0,
        resume=resume, on_trial_end=None if seen is None else seen.append,
    )


def test_three_trials_recorded_with_params_values_and_attrs(tmp_path: Path) -> None:
    seen: list = []
    study = _run(tmp_path, 3, seen=seen)
    assert (tmp_path / "study.db").exists()
    assert study.metric_names == ["accuracy", "macs"]
    records = load_records(f"sqlite:///{tmp_path / 'study.db'}", "t")
    assert [r.state for r in records] == ["COMPLETE"] * 3
    assert [r.number for r in seen] == [0, 1, 2]
    for r in records:
        assert set(r.params) == set(h.WIDTH_RANGES)
        assert 0.0 <= r.values["accuracy"] <= 1.0
        assert r.values["macs"] == count_macs(
            h.ss.build(h.ss.ArchSpec.from_dict(r.attrs["arch_spec"])), (1, 8, 8))
        assert r.attrs["widths"] == r.params
        assert Path(r.attrs["trial_dir"]) == tmp_path / "trials" / str(r.number)
        assert (tmp_path / "trials" / str(r.number) / "arch.json").exists()


def test_raising_trial_is_fail_with_error_and_study_goes_on(tmp_path: Path) -> None:
    evaluate = functools.partial(h.evaluate_failing_at, fail_at=1)
    _run(tmp_path, 3, evaluate=evaluate)
    records = load_records(f"sqlite:///{tmp_path / 'study.db'}", "t")
    assert [r.state for r in records] == ["COMPLETE", "FAIL", "COMPLETE"]
    failed = records[1]
    assert "deliberate failure in trial 1" in failed.attrs["error"]
    tb = Path(failed.attrs["error_file"]).read_text()
    assert "Traceback" in tb and "RuntimeError" in tb
    assert failed.params  # the candidate is kept for inspection


def test_rejected_trial_is_pruned_with_reason(tmp_path: Path) -> None:
    evaluate = functools.partial(h.evaluate, macs_budget=1.0)
    _run(tmp_path, 2, evaluate=evaluate)
    records = load_records(f"sqlite:///{tmp_path / 'study.db'}", "t")
    assert [r.state for r in records] == ["PRUNED", "PRUNED"]
    assert "budget" in records[0].attrs["rejected"]


def test_existing_study_needs_resume_and_resume_counts_the_total(tmp_path: Path) -> None:
    _run(tmp_path, 2)
    with pytest.raises(StudyExistsError, match="--resume"):
        _run(tmp_path, 4)
    before = load_records(f"sqlite:///{tmp_path / 'study.db'}", "t")
    study = _run(tmp_path, 4, resume=True)
    after = load_records(f"sqlite:///{tmp_path / 'study.db'}", "t")
    assert len(after) == 4 and counted_trials(study.trials) == 4
    assert [(r.params, r.values) for r in after[:2]] == [(r.params, r.values) for r in before]
    # resuming a finished study runs nothing; the new proposals are not a replay of the old
    _run(tmp_path, 4, resume=True)
    assert len(load_records(f"sqlite:///{tmp_path / 'study.db'}", "t")) == 4
    assert after[2].params != after[0].params


KILL_SCRIPT = textwrap.dedent("""
    import functools, sys
    sys.path.insert(0, {tests!r})
    import search_helpers as h
    from nas.backends.optuna import run_optuna
    run_optuna(study_name="t", storage=None, objectives=h.OBJECTIVES, sample=h.sample,
               evaluate=functools.partial(h.evaluate_hanging_at, hang_at=1, marker={marker!r}),
               n_trials=3, run_dir={run_dir!r}, seed=0)
""")


def test_trial_of_killed_process_is_failed_and_retried_on_resume(tmp_path: Path) -> None:
    marker = tmp_path / "hanging"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), marker=str(marker),
                                run_dir=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[1])
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, "worker exited before reaching the hanging trial"
            assert time.time() < deadline, "worker never reached trial 1"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert [r.state for r in load_records(url, "t")] == ["COMPLETE", "RUNNING"]

    _run(tmp_path, 3, resume=True)
    records = load_records(url, "t")
    assert [r.state for r in records] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    killed, retry = records[1], records[2]
    assert "died" in killed.attrs["error"]
    assert retry.attrs["retry_of"] == 1 and retry.params == killed.params
    assert "error" not in retry.attrs  # the retry starts clean


def test_journal_storage_with_two_threads_runs_exactly_the_total(tmp_path: Path) -> None:
    journal = f"journal:{tmp_path / 'journal.log'}"
    run_optuna(study_name="j", storage=journal, objectives=h.OBJECTIVES, sample=h.sample,
               evaluate=h.evaluate, n_trials=3, run_dir=tmp_path, sampler="tpe", seed=1,
               n_jobs=2)
    records = load_records(journal, "j")
    assert [r.state for r in records] == ["COMPLETE"] * 3
    assert not (tmp_path / "study.db").exists()
