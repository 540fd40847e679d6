"""The study behind a search: its storage, its trials' retries, the workers that run them.

Both backends (:mod:`nas.backends`) run trials on one Optuna study; this module is what they
share about it. Storage, the one source of truth (``pareto`` and ``export`` read it):

- ``None``: SQLite file ``run_dir/study.db`` (one process; ``n_jobs`` threads are fine).
- ``"journal:PATH"``: :class:`optuna.storages.JournalStorage` on a
  :class:`~optuna.storages.journal.JournalFileBackend` - use it for several local worker
  processes (SQLite locks up under concurrent writers, optuna#820).
- any SQLAlchemy URL (``sqlite:///x.db``, ``postgresql://...``, ``mysql://...``) for a cluster;
  a database server's lost connections are retried (:class:`ReconnectingRDBStorage`).

Crash safety. RDB storages (SQLite included) get a heartbeat: a trial whose process dies stops
beating, is failed after ``grace_period`` seconds and re-queued with the same parameters
(:class:`RequeueTrial`, like Optuna's ``RetryFailedTrialCallback``). Independently of the
heartbeat, every trial records its worker (host, pid, process start time); a RUNNING trial
owned by a dead process on this host is failed and re-queued (:func:`recover_stale_trials`).
That is the only mechanism for journal storage, which has no heartbeat. Stale trials of
other hosts are failed by the heartbeat only.

Re-queueing is idempotent and repaired at every start: a *retryable* FAIL (killed, stale,
interrupted, disk full - see :func:`needs_retry`) that has no retry yet gets one, so a kill
between "mark FAIL" and "re-queue" loses nothing, and a retry that is killed again is
re-queued again (``max_retry=None``: however often). The repair runs under a file lock in the
run directory (:func:`run_lock`), so workers starting together do not queue a trial twice.

Trial counting (:func:`counted_trials`). ``n_trials`` is the *total* number of finished trials
the study should hold, counted across resumes and across worker processes: COMPLETE + PRUNED
(rejected) + FAIL raised by the candidate itself. A retryable FAIL (killed, interrupted, disk
full) never counts - its retry does - so N trials asked end as N finished however often the
search is killed and resumed.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from nas.search_types import Objective, TrialRecord

log = logging.getLogger(__name__)


class StudyExistsError(RuntimeError):
    """The study is already in the storage and the caller did not ask to resume it."""


def needs_retry(trial: FrozenTrial) -> bool:
    """A FAIL that is no verdict on the candidate: killed, stale, interrupted, disk full."""
    if trial.state != TrialState.FAIL:
        return False
    attrs = trial.user_attrs
    return bool(attrs.get("requeue") or attrs.get("interrupted")) or "error" not in attrs


def retried_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of the trials that already have a retry (any trial naming them in its history)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def _retries_used(trial: FrozenTrial) -> int:
    return len(trial.system_attrs.get("retry_history", []))


class RequeueTrial:
    """Re-queue a failed trial (WAITING, same params), at most once per failed trial.

    Optuna's ``RetryFailedTrialCallback`` with two differences: the retry does not inherit the
    dead trial's user attrs (its error, worker, timings), only its parameters; and it is
    idempotent - a trial that already has a retry is not queued again, so the start-up repair
    (:func:`requeue_missing`) and the heartbeat may both call it. ``max_retry=None``: re-queue
    however often the same candidate is killed. The ``failed_trial`` / ``retry_history``
    system attrs are the same as Optuna's.
    """

    def __init__(self, max_retry: int | None = None) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if not trial.params:  # killed before sampling: nothing to keep, a fresh trial will do
            return False
        if self.max_retry is not None and _retries_used(trial) >= self.max_retry:
            return False
        if trial.number in retried_numbers(study.get_trials(deepcopy=False)):
            return False
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        system_attrs = {"failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                        "retry_history": history}
        study.add_trial(optuna.trial.create_trial(  # one storage write: atomic
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            system_attrs=system_attrs,
        ))
        return True


def requeue_missing(study: optuna.Study, *, max_retry: int | None = None) -> list[int]:
    """Queue a retry for every retryable FAIL that has none; returns their numbers."""
    retry = RequeueTrial(max_retry=max_retry)
    done = []
    for t in study.get_trials(deepcopy=False):
        if needs_retry(t) and retry(study, t):
            done.append(t.number)
    if done:
        log.warning("re-queued trial(s) %s (killed, interrupted or out of disk)", done)
    return done


def default_storage_url(run_dir: str | Path) -> str:
    """The embedded default: ``sqlite:///<run_dir>/study.db`` (absolute path)."""
    return f"sqlite:///{Path(run_dir).resolve() / 'study.db'}"


def open_storage(
    storage: str | BaseStorage | None,
    run_dir: str | Path | None = None,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int | None = None,
    must_exist: bool = False,
) -> BaseStorage:
    """Open an Optuna storage from ``None`` (run_dir/study.db), ``journal:PATH`` or a DB URL.

    Args:
        storage: See the module docstring; a ready ``BaseStorage`` is returned unchanged.
        run_dir: Needed when ``storage`` is None.
        heartbeat_interval: Seconds between heartbeats of running trials (RDB storages only);
            None turns the heartbeat off (read-only use).
        grace_period: Seconds without heartbeat before a running trial is failed
            (default ``2 * heartbeat_interval``).
        max_retry: How many times a killed trial is re-queued (None: however often).
        must_exist: Raise FileNotFoundError instead of creating an empty SQLite / journal file.
    """
    if isinstance(storage, BaseStorage):
        return storage
    if storage is None:
        if run_dir is None:
            raise ValueError("storage=None needs run_dir (the study goes to run_dir/study.db)")
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        storage = default_storage_url(run_dir)
    if storage.startswith("journal:"):
        path = Path(storage[len("journal:"):]).expanduser()
        if must_exist and not path.exists():
            raise FileNotFoundError(f"no Optuna journal at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str(path)))
    if "${" in storage:  # a password kept in the environment: expanded only here
        from nas.storage import expand_env

        storage = expand_env(storage)
    if "://" not in storage:
        raise ValueError(
            f"storage {storage!r}: expected a database URL (sqlite:///runs/x/study.db, "
            "postgresql://...), 'journal:PATH', or nothing for run_dir/study.db"
        )
    if storage.startswith("sqlite:///") and storage != "sqlite:///:memory:":
        db = Path(storage[len("sqlite:///"):])
        if must_exist and not db.exists():
            raise FileNotFoundError(f"no Optuna database at {db}")
        db.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if storage.startswith("sqlite:"):  # wait for the heartbeat thread's writes, not fail
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():  # heartbeat and retry are "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if heartbeat_interval is not None:
            kwargs |= {
                "heartbeat_interval": heartbeat_interval,
                "grace_period": grace_period,
                _retry_kwarg(): RequeueTrial(max_retry=max_retry),
            }
        return _rdb_storage(storage, kwargs)


# How long a lost database connection is retried before the error reaches the search: long
# enough for a server restart or a quick failover, and (with the last backoff step) below the
# heartbeat's default grace period (2 x 60 s), so that no other worker fails a trial whose
# worker is only waiting for the database.
RECONNECT_TIMEOUT_S = 90.0

# SQLSTATEs of a lost connection: class 08 (connection exception) and the server shutting
# down (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now)
_LOST_STATES = ("08", "57P01", "57P02", "57P03")


# RDBStorage's own calls that open a session of their own; the session-taking helpers
# (``..._without_commit``) are never retried on their own.
_RETRIED_CALLS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_trial_user_attrs",
    "get_trial_system_attrs", "get_all_studies", "create_new_trial", "_create_new_trial",
    "set_trial_param", "_set_trial_param", "get_trial_param", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial_id_from_study_id_trial_number",
    "get_trial", "get_all_trials", "_get_trials", "get_best_trial", "_get_best_trial_id",
    "record_heartbeat", "_get_stale_trial_ids",
)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a lost or refused database connection: the
    server restarted, failed over or is briefly unreachable - not a bad query or bad data."""
    from sqlalchemy import exc as sa_exc

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:  # the exception and what it was raised from
        seen.add(id(e))
        if isinstance(e, sa_exc.DisconnectionError):
            return True
        if isinstance(e, sa_exc.DBAPIError):
            if e.connection_invalidated or isinstance(e, sa_exc.InterfaceError):
                return True
            if isinstance(e, sa_exc.OperationalError):
                # a refused or dropped connection has no SQLSTATE (client side) or a
                # connection one; a deadlock, timeout, full disk or bad password has its own
                state = getattr(e.orig, "sqlstate", None) or getattr(e.orig, "pgcode", None)
                return state is None or str(state).startswith(_LOST_STATES)
        e = e.__cause__
    return False


class ReconnectingRDBStorage(RDBStorage):
    """An ``RDBStorage`` that survives a database restart: a call that fails because the
    connection was lost is retried with backoff (0.25 s doubling to 10 s) for up to
    ``RECONNECT_TIMEOUT_S``, on fresh connections (the pool pings before use), so a trial
    that finished while the server was down is still recorded COMPLETE and nothing is
    re-queued. A failure that is not a lost connection is raised at once. A result whose
    commit went through but whose answer was lost is recognised instead of written twice.
    """

    def _retrying(self, name: str, call: Callable[..., Any], *args: Any,
                  _done: Callable[[], bool] | None = None, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)``, retried while the connection is lost; on a retry,
        ``_done()`` true means the lost attempt was committed (its answer is ``True``)."""
        import time

        deadline = time.monotonic() + RECONNECT_TIMEOUT_S
        delay = 0.25
        lost = False
        while True:
            try:
                if lost and _done is not None and _done():
                    return True
                out = call(*args, **kwargs)
                if lost:
                    log.warning("study database reachable again; %s went through", name)
                return out
            except Exception as exc:
                if not connection_lost(exc) or time.monotonic() + delay > deadline:
                    raise
                if not lost:
                    from nas.storage import scrub

                    log.warning("lost the connection to the study database (%s); retrying "
                                "for up to %.0f s", scrub(" ".join(str(exc).split())[:160]),
                                RECONNECT_TIMEOUT_S)
                lost = True
                self.engine.dispose()  # drop the dead pooled connections
                time.sleep(delay)
                delay = min(10.0, delay * 2)

    def _already_set(self, trial_id: int, state: TrialState,
                     values: Sequence[float] | None = None) -> bool:
        """Whether an earlier attempt of ``set_trial_state_values`` was committed before the
        connection dropped (the trial already holds that state and those values)."""
        trial = RDBStorage.get_trial(self, trial_id)
        if trial.state != state or not state.is_finished():
            return False
        return values is None or list(trial.values or []) == list(values)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        return self._retrying("set_trial_state_values", super().set_trial_state_values,
                              trial_id, state, values,
                              _done=lambda: self._already_set(trial_id, state, values))


def _retried(name: str) -> Callable[..., Any]:
    base = getattr(RDBStorage, name)

    def method(self: ReconnectingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retrying(name, lambda *a, **k: base(self, *a, **k), *args, **kwargs)

    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


for _name in _RETRIED_CALLS:
    if hasattr(RDBStorage, _name):
        setattr(ReconnectingRDBStorage, _name, _retried(_name))


def _rdb_storage(url: str, kwargs: dict[str, Any], attempts: int = 6) -> RDBStorage:
    """``RDBStorage(url)``, retried when another process is creating the schema right now.

    Workers started together on a fresh database race in Optuna's ``create_all`` (PostgreSQL:
    "duplicate key value violates unique constraint pg_type_typname_nsp_index" on the enum
    types, or "already exists"); the loser retries and finds the schema made.
    """
    import time

    cls = RDBStorage
    if not url.startswith("sqlite:"):  # a database server: it may restart under a search
        cls = ReconnectingRDBStorage
        engine = dict(kwargs.get("engine_kwargs") or {})
        engine.setdefault("pool_pre_ping", True)
        kwargs = {**kwargs, "engine_kwargs": engine}
    for attempt in range(attempts):
        try:
            return cls(url, **kwargs)
        except Exception as exc:  # noqa: BLE001 - only the schema race is retried
            text = str(exc)
            race = "already exists" in text or "pg_type_typname_nsp_index" in text \
                or "duplicate key value" in text
            if not race or attempt == attempts - 1:
                raise
            log.info("storage schema being created by another process; retrying")
            time.sleep(0.3 * (attempt + 1))
    raise AssertionError("unreachable")


def _retry_kwarg() -> str:
    import inspect

    params = inspect.signature(RDBStorage.__init__).parameters
    return "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params \
        else "failed_trial_callback"


def describe_storage(storage: str | BaseStorage | None, run_dir: str | Path | None) -> str:
    if storage is None:
        return default_storage_url(run_dir or ".")
    if isinstance(storage, BaseStorage):
        return type(storage).__name__
    return storage


def trial_record(trial: FrozenTrial, objective_names: Sequence[str]) -> TrialRecord:
    """A :class:`TrialRecord` from an Optuna ``FrozenTrial``."""
    values: dict[str, float] = {}
    if trial.values is not None:
        values = {n: float(v) for n, v in zip(objective_names, trial.values, strict=False)}
    attrs = dict(trial.user_attrs)
    if trial.state == TrialState.FAIL and "error" not in attrs:
        attrs["error"] = "the trial stopped without reporting (process killed or heartbeat lost)"
    retried = trial.system_attrs.get("failed_trial")
    if retried is not None:
        attrs.setdefault("retry_of", retried)
    return TrialRecord(trial.number, trial.state.name, values, dict(trial.params), attrs)


def counted_trials(trials: Sequence[FrozenTrial], *, max_retry: int | None = None) -> int:
    """Finished trials that count towards ``n_trials`` (see the module docstring).

    COMPLETE, PRUNED and FAILs raised by the candidate count; a retryable FAIL (killed,
    interrupted, disk full) counts only once its candidate is out of retries (``max_retry``).
    """
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    n = 0
    for t in trials:
        if t.state in finished:
            n += 1
        elif t.state == TrialState.FAIL:
            out_of_retries = max_retry is not None and _retries_used(t) >= max_retry
            n += not needs_retry(t) or out_of_retries
    return n


def create_or_load_study(
    *,
    study_name: str,
    storage: BaseStorage,
    objectives: Sequence[Objective],
    resume: bool,
    sampler: optuna.samplers.BaseSampler | None = None,
    storage_desc: str = "",
    backend: str = "optuna",
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it when ``resume``; returns ``(study, existed)``.

    Raises:
        StudyExistsError: the study exists and ``resume`` is False (nothing is overwritten).
        ValueError: a resumed study has other objectives than asked for.
    """
    names = [o.name for o in objectives]
    directions = [o.direction for o in objectives]
    existing = set(optuna.study.get_all_study_names(storage))
    if study_name in existing:
        if not resume:
            raise StudyExistsError(
                f"study {study_name!r} already exists in {storage_desc or 'the storage'}; "
                "pass --resume to continue it, or use another --out or search.study_name"
            )
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
        _check_objectives(study, names, directions)
        if study.user_attrs.get("backend", backend) != backend:
            raise ValueError(
                f"study {study_name!r} was run with the {study.user_attrs['backend']} backend; "
                f"resume it with that backend, not {backend}"
            )
        return study, True
    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, sampler=sampler, directions=directions
        )
    except optuna.exceptions.DuplicatedStudyError:
        if not resume:  # another worker created it between our check and now
            raise StudyExistsError(
                f"study {study_name!r} was just created by another process; start extra "
                "workers with --resume"
            ) from None
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
        return study, True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)
    study.set_user_attr("objectives", [{"name": n, "direction": d} for n, d in zip(names, directions, strict=True)])
    study.set_user_attr("backend", backend)
    return study, False


def _check_objectives(study: optuna.Study, names: Sequence[str], directions: Sequence[str]) -> None:
    have_dirs = [d.name.lower() for d in study.directions]
    have_names = study.metric_names or [f"values_{i}" for i in range(len(have_dirs))]
    if have_dirs != list(directions) or list(have_names) != list(names):
        raise ValueError(
            f"study {study.study_name!r} has objectives "
            f"{list(zip(have_names, have_dirs, strict=False))}, but this search asks for "
            f"{list(zip(names, directions, strict=False))}; use another study name"
        )


def load_objectives(study: optuna.Study) -> list[Objective]:
    """The study's objectives (names from ``set_metric_names``)."""
    dirs = [d.name.lower() for d in study.directions]
    names = study.metric_names or [f"values_{i}" for i in range(len(dirs))]
    return [Objective(n, d) for n, d in zip(names, dirs, strict=True)]  # type: ignore[arg-type]


def this_worker() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _process_start(os.getpid())}


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - no psutil, or no such process
        return None


def _worker_alive(worker: dict[str, Any]) -> bool:
    pid = int(worker.get("pid", -1))
    if pid <= 0:
        return True  # unknown: never fail a trial we cannot judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = worker.get("started")
    now_started = _process_start(pid)
    # a different start time: the pid was reused by another process
    return started is None or now_started is None or abs(now_started - started) <= 1.0


class WorkerRegistration:
    """This process's claim on a run directory: a lock file held while it runs trials.

    ``run_dir/.workers/HOST-PID.lock`` is locked (``flock``) for the worker's lifetime; the
    kernel releases it when the process dies, however it dies. A trial killed in the instant
    between its creation and the recording of its worker has no owner to check; it is failed
    only when no other worker holds its lock (:meth:`others_alive`).
    """

    def __init__(self, run_dir: Path) -> None:
        from filelock import FileLock

        self.folder = Path(run_dir) / ".workers"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"{socket.gethostname()}-{os.getpid()}.lock"
        self.lock = FileLock(str(self.path))
        self.lock.acquire()

    def others_alive(self) -> bool:
        from filelock import FileLock, Timeout

        alive = False
        for p in self.folder.glob("*.lock"):
            if p == self.path:
                continue
            other = FileLock(str(p), timeout=0)
            try:
                other.acquire()
            except Timeout:
                alive = True
                continue
            other.release()
            p.unlink(missing_ok=True)  # a dead worker's leftover
        return alive

    def release(self) -> None:
        self.lock.release()
        self.path.unlink(missing_ok=True)


def recover_stale_trials(study: optuna.Study, *, max_retry: int | None = None,
                         fail_unowned: bool = False,
                         unowned_after_s: float | None = None) -> list[int]:
    """Fail RUNNING trials whose worker process on this host is gone, and re-queue them.

    ``fail_unowned``: also fail RUNNING trials that never recorded a worker (killed right
    after their creation); only safe when no other worker is alive on the study.
    ``unowned_after_s``: fail those once they have been RUNNING that long (a trial records its
    worker as it starts, so one that has not after minutes never will: a worker killed in
    that instant, or a creation repeated after a lost database answer).

    Then run Optuna's heartbeat check (RDB storages) for trials of other hosts, and queue a
    retry for every retryable FAIL that has none (:func:`requeue_missing`: a kill between
    "mark FAIL" and "re-queue", a KeyboardInterrupt, a full disk). Returns the numbers of the
    trials failed here.
    """
    storage = study._storage  # Optuna's own fail_stale_trials works on the storage directly
    host = socket.gethostname()
    retry = RequeueTrial(max_retry=max_retry)
    failed: list[int] = []
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        worker = t.user_attrs.get("worker")
        age = (None if t.datetime_start is None else
               (datetime.datetime.now() - t.datetime_start).total_seconds())
        stale_unowned = unowned_after_s is not None and age is not None and age > unowned_after_s
        if worker is None and (fail_unowned or stale_unowned):
            reason = "the worker process died as the trial started (killed?)"
        elif not isinstance(worker, dict) or worker.get("host") != host or _worker_alive(worker):
            continue
        else:
            reason = (f"worker process {worker.get('pid')} on {host} died while running the "
                      "trial (killed?)")
        try:
            if "error" not in t.user_attrs or not t.user_attrs.get("requeue"):
                storage.set_trial_user_attr(t._trial_id, "error", reason)
            storage.set_trial_user_attr(t._trial_id, "requeue", True)  # before FAIL: a kill
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):  # here
                continue                                                 # leaves it RUNNING
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        failed.append(t.number)
        retry(study, storage.get_trial(t._trial_id))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    requeue_missing(study, max_retry=max_retry)
    if failed:
        log.warning("failed and re-queued trial(s) %s left RUNNING by a dead process", failed)
    return failed


def run_lock(run_dir: str | Path, name: str, *, timeout: float = -1) -> Any:
    """A file lock ``run_dir/.NAME.lock`` shared by every worker process on this run directory."""
    from filelock import FileLock

    path = Path(run_dir) / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), timeout=timeout)
