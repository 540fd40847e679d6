"""Run a search with Optuna in this process (``n_jobs`` threads) or several local processes.

The study, its storage, retries and crash recovery are :mod:`nas.study`'s; this module runs
trials on it. Several processes on one study (journal or RDB storage, each ``resume=True``)
stop when the finished trials plus those running in other workers reach the total; two
workers that start their next trial in the same instant can still overshoot, so the study may
end up to ``workers - 1`` trials over ``n_trials`` (rarely more than 0). A worker that runs
out of trials while others still run theirs waits for them (and reruns the trial of one
that died), so its results hold every trial.

Example:
    >>> study = run_optuna(study_name="lenet", storage=None, objectives=[
    ...     Objective("accuracy", "maximize"), Objective("macs", "minimize")],
    ...     sample=sample, evaluate=evaluate, n_trials=40, run_dir=Path("runs/lenet"))
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from nas.search_types import (
    EvaluateFn,
    Objective,
    RejectTrial,
    SampleFn,
    TrialContext,
    TrialEndFn,
)
from nas.study import (
    WorkerRegistration,
    counted_trials,
    create_or_load_study,
    describe_storage,
    open_storage,
    recover_stale_trials,
    run_lock,
    this_worker,
    trial_record,
)

from .base import (
    RESERVED_ATTRS,
    SearchJob,
    check_result,
    error_text,
    jsonable,
    make_sampler,
    write_error,
)

log = logging.getLogger(__name__)


_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


class DiskError(RuntimeError):
    """Writing failed for lack of space (or a read-only / failing disk); the search stopped."""


def disk_error(exc: BaseException | None) -> OSError | None:
    """The OSError (disk full, quota, read-only, I/O error) behind ``exc``, if any."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_ERRNOS:
            return seen
        if "database or disk is full" in str(seen):  # SQLite's own ENOSPC
            return OSError(errno.ENOSPC, "database or disk is full", None)
        seen = seen.__cause__ or seen.__context__
    return None


class _Objective:
    """The Optuna objective: sample -> evaluate -> user attrs; errors land in the trial dir.

    A disk error (full, quota, read-only) marks the trial FAIL with the reason and
    ``requeue=True`` (a retry is queued at the next start) and stops the study: the next trial
    would fail the same way. :func:`run_optuna` then raises :class:`DiskError`.
    """

    def __init__(self, sample: SampleFn, evaluate: EvaluateFn, objectives: Sequence[Objective],
                 run_dir: Path) -> None:
        self.sample = sample
        self.evaluate = evaluate
        self.objectives = list(objectives)
        self.run_dir = run_dir
        self.disk_error: tuple[int, OSError] | None = None

    def __call__(self, trial: optuna.Trial) -> list[float]:
        import time

        trial_dir = self.run_dir / "trials" / str(trial.number)
        trial_dir.mkdir(parents=True, exist_ok=True)
        trial.set_user_attr("trial_dir", str(trial_dir))
        trial.set_user_attr("backend", "optuna")
        trial.set_user_attr("worker", this_worker())
        ctx = TrialContext(trial.number, trial_dir, self.run_dir, "optuna")
        start = time.perf_counter()
        try:
            params = self.sample(trial)
            result = self.evaluate(params, ctx)
            values = check_result(result, self.objectives)
        except RejectTrial as exc:
            trial.set_user_attr("rejected", str(exc) or "rejected")
            trial.set_user_attr("elapsed_s", time.perf_counter() - start)
            raise optuna.TrialPruned(str(exc)) from None
        except KeyboardInterrupt:
            trial.set_user_attr("error", "interrupted (KeyboardInterrupt)")
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as exc:
            disk = disk_error(exc)
            if disk is not None:
                self.disk_error = (trial.number, disk)
                trial.study.stop()
            _quietly(trial.set_user_attr, "error", error_text(exc))
            if disk is not None:
                _quietly(trial.set_user_attr, "requeue", True)
            else:
                _quietly(_record_error_file, trial, trial_dir, exc)
            _quietly(trial.set_user_attr, "elapsed_s", time.perf_counter() - start)
            raise
        for key, value in jsonable(result.attrs).items():
            if key in RESERVED_ATTRS and key != "elapsed_s":
                key = f"result_{key}"
            trial.set_user_attr(key, value)
        trial.set_user_attr("elapsed_s", time.perf_counter() - start)
        return values


def _record_error_file(trial: optuna.Trial, trial_dir: Path, exc: BaseException) -> None:
    trial.set_user_attr("error_file", str(write_error(trial_dir, exc)))


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    """Record what we can about a failing trial; a second failure (the disk) must not mask it."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not record the trial's failure: %s", exc)


class _StopAtTotal:
    """Stop once the study's finished trials plus those running elsewhere make ``total``.

    Counting the trials other workers are running (rather than only finished ones) keeps
    several workers from overshooting: the last trials are left to the workers running them.
    """

    def __init__(self, total: int, max_retry: int | None = None) -> None:
        self.total = total
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if counted_trials(trials, max_retry=self.max_retry) + running >= self.total:
            study.stop()


class _OnTrialEnd:
    def __init__(self, fn: TrialEndFn, names: list[str]) -> None:
        self.fn = fn
        self.names = names

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.fn(trial_record(trial, self.names))


def run_optuna(
    *,
    study_name: str,
    storage: str | BaseStorage | None,
    objectives: Sequence[Objective],
    sample: SampleFn,
    evaluate: EvaluateFn,
    n_trials: int,
    run_dir: str | Path,
    sampler: str | optuna.samplers.BaseSampler = "nsga2",
    seed: int | None = 0,
    resume: bool = False,
    n_jobs: int = 1,
    on_trial_end: TrialEndFn | None = None,
    population_size: int | None = None,
    heartbeat_interval: int = 60,
    grace_period: int | None = None,
    max_retry: int | None = None,
) -> optuna.Study:
    """Run (or resume) a multi-objective Optuna search until the study holds ``n_trials``.

    Args:
        study_name: Study name in the storage.
        storage: None (``run_dir/study.db``), ``"journal:PATH"`` or a database URL.
        objectives: Names and directions; ``evaluate`` must return one value per name.
        sample: Define-by-run function suggesting a candidate on the Optuna trial.
        evaluate: ``evaluate(params, ctx) -> TrialResult``; may raise :class:`RejectTrial`
            (recorded PRUNED with ``attrs["rejected"]``) or any exception (recorded FAIL with
            ``attrs["error"]`` and ``trial_dir/error.txt``; the search goes on).
        n_trials: Total trials the study should hold, counted across resumes (see module doc).
        run_dir: Run directory; trial ``n`` works in ``run_dir/trials/n``.
        sampler: ``"nsga2"`` | ``"tpe"`` | ``"random"`` or a sampler instance.
        seed: Sampler seed. A resumed study seeds with ``seed + len(trials)`` so that it does
            not replay the first run's random proposals.
        resume: Continue an existing study (and create it if missing). Without it an existing
            study is an error, so nothing is overwritten. Extra workers use ``resume=True``.
        n_jobs: Threads in this process (use journal / RDB storage for several processes).
        on_trial_end: Progress hook, called with the :class:`TrialRecord` of each ended trial.
        population_size: NSGA-II population (default ``clamp(n_trials // 4, 4, 50)``).
        heartbeat_interval, grace_period: Crash detection of RDB storages.
        max_retry: How often one candidate is re-queued after a kill (None: however often).

    Raises:
        DiskError: a trial could not write for lack of disk space (it is FAIL with the reason
            and is retried on resume).

    Returns:
        The study (its storage holds every trial: params, values, user attrs).
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if n_trials < 0:
        raise ValueError(f"n_trials must be >= 0, got {n_trials}")
    desc = describe_storage(storage, run_dir)
    me = WorkerRegistration(run_dir)
    try:
        return _run_optuna(study_name=study_name, storage=storage, objectives=objectives,
                           sample=sample, evaluate=evaluate, n_trials=n_trials,
                           run_dir=run_dir, sampler=sampler, seed=seed, resume=resume,
                           n_jobs=n_jobs, on_trial_end=on_trial_end,
                           population_size=population_size,
                           heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                           max_retry=max_retry, me=me, desc=desc)
    finally:
        me.release()


def _run_optuna(*, study_name: str, storage: str | BaseStorage | None,
                objectives: Sequence[Objective], sample: SampleFn, evaluate: EvaluateFn,
                n_trials: int, run_dir: Path, sampler: str | optuna.samplers.BaseSampler,
                seed: int | None, resume: bool, n_jobs: int, on_trial_end: TrialEndFn | None,
                population_size: int | None, heartbeat_interval: int, grace_period: int | None,
                max_retry: int | None, me: WorkerRegistration, desc: str) -> optuna.Study:
    # a file storage lives on this host: its workers all register in run_dir/.workers
    local = storage is None or (isinstance(storage, str)
                                and storage.startswith(("journal:", "sqlite:")))
    with run_lock(run_dir, "study"):  # schema creation, study creation, repair: one at a time
        store = open_storage(storage, run_dir, heartbeat_interval=heartbeat_interval,
                             grace_period=grace_period, max_retry=max_retry)
        study, existed = create_or_load_study(
            study_name=study_name, storage=store, objectives=objectives, resume=resume,
            storage_desc=desc,
        )
        if existed:
            recover_stale_trials(study, max_retry=max_retry,
                                 fail_unowned=local and not me.others_alive())
    trials = study.get_trials(deepcopy=False)
    sampler_seed = None if seed is None else seed + len(trials)
    study.sampler = make_sampler(sampler, seed=sampler_seed, n_trials=n_trials,
                                 population_size=population_size)
    remaining = n_trials - counted_trials(trials, max_retry=max_retry)
    log.info("study %r in %s: %d trial(s) counted, %d to run", study_name, desc,
             n_trials - max(remaining, 0), max(remaining, 0))
    if remaining <= 0:
        return study
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [
        _StopAtTotal(n_trials, max_retry)]
    if on_trial_end is not None:
        callbacks.append(_OnTrialEnd(on_trial_end, [o.name for o in objectives]))
    objective = _Objective(sample, evaluate, objectives, run_dir)
    while True:
        # every trial this process ends counts, except a disk error (which stops the study)
        # and an interrupt (which raises); _StopAtTotal stops early when other workers share
        # the study and are running its last trials
        study.optimize(objective, n_trials=remaining, n_jobs=n_jobs, catch=(Exception,),
                       callbacks=callbacks, gc_after_trial=True)
        if objective.disk_error is not None:
            number, exc = objective.disk_error
            where = f" while writing {exc.filename}" if exc.filename else ""
            raise DiskError(f"trial {number}: {exc.strerror or exc}{where}; the trial is FAIL "
                            "and is retried on --resume") from exc
        trials = study.get_trials(deepcopy=False)
        remaining = n_trials - counted_trials(trials, max_retry=max_retry)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if remaining <= 0:
            return study
        if remaining <= running:  # the rest is running in other workers: wait for them,
            # so that this worker's results (front, export, summary) hold every trial
            _wait_for_others(study, me, local=local, max_retry=max_retry)
            remaining = n_trials - counted_trials(study.get_trials(deepcopy=False),
                                                  max_retry=max_retry)
            if remaining <= 0:
                return study


def _wait_for_others(study: optuna.Study, me: WorkerRegistration, *, local: bool,
                     max_retry: int | None, poll_s: float = 2.0) -> None:
    """Until no trial is RUNNING: other workers' trials end, or their workers are found dead
    (:func:`recover_stale_trials`: the process gone on this host, no heartbeat elsewhere, no
    worker recorded after 5 minutes) and the trials are failed and re-queued. The repair runs
    under the run directory's study lock (as at start-up), once more after the wait; a line
    every 10 minutes says what is still awaited."""
    import time

    run_dir = me.folder.parent
    said: float | None = None  # when the last line was logged
    while True:
        with run_lock(run_dir, "study"):
            recover_stale_trials(study, max_retry=max_retry,
                                 fail_unowned=local and not me.others_alive(),
                                 unowned_after_s=300.0)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        if said is None or time.monotonic() - said > 600.0:
            log.warning("waiting for %d trial(s) still running in other workers (%s) before "
                        "writing the results", len(running),
                        ", ".join(f"#{t.number}" for t in running))
            said = time.monotonic()
        time.sleep(poll_s)


@dataclass
class OptunaBackend:
    """The :class:`~nas.backends.base.Backend` that runs trials in this process
    (:func:`run_optuna`'s extra settings: threads, heartbeat, retries)."""

    n_jobs: int = 1
    heartbeat_interval: int = 60
    grace_period: int | None = None
    max_retry: int | None = None
    name: str = "optuna"

    def run(self, job: SearchJob) -> optuna.Study:
        return run_optuna(**job.kwargs(), n_jobs=self.n_jobs,
                          heartbeat_interval=self.heartbeat_interval,
                          grace_period=self.grace_period, max_retry=self.max_retry)
