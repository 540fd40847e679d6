"""Run a search with Ray Tune: trials in worker processes, locally or on a cluster.

Live storage. Tune drives the trials with Ray's ``OptunaSearch`` opened on the user's own
Optuna storage (``storage=``, ``study_name=``): a trial is created in the study (RUNNING, its
parameters set, real start time) when Tune launches it and finished (COMPLETE / FAIL / PRUNED,
real completion time, every attribute) when it ends, so ``optuna-dashboard``, ``pareto`` and
``export`` see the search while it runs, and a driver crash loses only the trials then running.
The trial number is the study's trial number (``trials/<n>/``), as with the Optuna backend.
Each worker also writes its host, pid, Ray node id and niceness into the study when it starts
(best effort: a worker that cannot reach the storage leaves that to the driver).

Resume without pickles. ``resume=True`` loads the study from the storage and starts a fresh
Tune experiment for the remaining trials; nothing in the run directory is unpickled (Tune's
``tuner.pkl`` / searcher state are never read back: anyone able to write the run directory
could otherwise run code). Trials left RUNNING by a driver that died are failed and re-queued
with their parameters; the sampler continues from the stored trials.

Trial counting. ``n_trials`` is the total the study should hold, counted across resumes as for
the Optuna backend (:func:`nas.study.counted_trials`).

Cluster. ``ray_address`` joins a running cluster. Concurrency defaults to what the cluster
offers (its CPUs / GPUs divided by ``resources_per_trial``). Ray starts its workers at nice 15
(``RAY_worker_niceness``), which starves trials on a busy host: a locally started Ray gets
``RAY_worker_niceness=0``, and each trial lowers its niceness back to 0 where allowed (root or
CAP_SYS_NICE) and records the value it ran at; start cluster nodes with
``RAY_worker_niceness=0 ray start ...``. Trials read ``run_dir/pretrained`` and write
``run_dir/trials/<n>``: on several nodes the run directory must be one shared filesystem at
the same path on every node, which :func:`check_shared_run_dir` verifies before any trial runs.

Picklability. ``evaluate`` is shipped to the workers with cloudpickle and must be importable
there (a module-level function or ``functools.partial`` of one, in a package installed on every
node; a locally started Ray gives its workers this process's ``sys.path``). ``sample`` runs in
the driver.

Rejected trials (:class:`RejectTrial`) report NaN objectives so that Tune's metric check
passes; they are recorded PRUNED with ``attrs["rejected"]``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from nas.search_types import (
    EvaluateFn,
    Objective,
    RejectTrial,
    SampleFn,
    TrialContext,
    TrialEndFn,
    TrialRecord,
)
from nas.storage import StorageError
from nas.study import (
    RequeueTrial,
    counted_trials,
    create_or_load_study,
    describe_storage,
    open_storage,
    this_worker,
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

# keys of Tune results / our own config keys that an objective may not be called
_TUNE_RESERVED = {"done", "config", "trial_id", "training_iteration", "time_total_s", "timestamp",
                  "pid", "hostname", "node_ip", "date", "time_this_iter_s", "experiment_tag",
                  "checkpoint_dir_name", "time_since_restore", "iterations_since_restore"}
_ATTRS_KEY = "_nas_attrs"
_REJECTED_KEY = "_nas_rejected"
_ORPHAN_ERROR = ("the Ray driver stopped while the trial was running (interrupted or killed); "
                 "re-queued with the same parameters")


class SharedDiskError(StorageError):
    """A Ray node cannot see the run directory (it must be on a shared filesystem); the CLI
    reports it as one message, exit 2."""


# -- what runs where ---------------------------------------------------------------------------
def _space(sample: SampleFn, trial: Any) -> dict[str, Any]:
    """Define-by-run space for OptunaSearch (runs in the driver, on the live study's trial).

    Returns the params dict as ``sample`` returned it (keys with "/" would otherwise be
    unflattened by Tune) and the study's trial number.
    """
    return {"_nas_params": sample(trial), "_nas_number": int(trial.number)}


def _renice(target: int = 0) -> int | None:
    """Lower this worker's niceness to ``target`` where allowed; return the niceness it has."""
    try:
        now = os.getpriority(os.PRIO_PROCESS, 0)
        if now > target:  # not root / no CAP_SYS_NICE: keep what the raylet gave us
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, target)
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):  # no getpriority on this platform
        return None


def _node() -> dict[str, Any]:
    import ray

    out: dict[str, Any] = {}
    try:
        out["node_id"] = ray.get_runtime_context().get_node_id()
        out["node_ip"] = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - not inside Ray (tests call the trainable directly)
        pass
    return out


def _write_live(storage: str | None, study_name: str, number: int, attrs: Mapping[str, Any]
                ) -> bool:
    """Set user attrs of trial ``number`` from the worker; False if the storage is unreachable.

    SQLite / journal files are opened with ``must_exist`` so that a node that does not see
    them never creates an empty one.
    """
    if storage is None:
        return False
    try:
        store = open_storage(storage, must_exist=True)
        study_id = store.get_study_id_from_name(study_name)
        trial_id = store.get_trial_id_from_study_id_trial_number(study_id, number)
        for key, value in attrs.items():
            store.set_trial_user_attr(trial_id, key, value)
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose()
        return True
    except Exception as exc:  # noqa: BLE001 - the driver records the attrs at the end anyway
        log.warning("trial %d: could not write to the storage from the worker: %s", number,
                    error_text(exc))
        return False


def _trainable(config: dict[str, Any], *, evaluate: EvaluateFn, objectives: list[Objective],
               run_dir: str, storage: str | None, study_name: str) -> None:
    """The Tune function trainable (runs in a worker process): one evaluate, one report."""
    number = int(config["_nas_number"])
    root = Path(run_dir)
    trial_dir = root / "trials" / str(number)
    trial_dir.mkdir(parents=True, exist_ok=True)
    worker = this_worker() | _node() | {"niceness": _renice()}
    base: dict[str, Any] = {"trial_dir": str(trial_dir), "backend": "ray",
                            "ray_trial_id": tune.get_context().get_trial_id(),
                            "worker": worker, "started_at": time.time()}
    _write_live(storage, study_name, number, base)
    start = time.perf_counter()
    names = [o.name for o in objectives]
    try:
        result = evaluate(dict(config["_nas_params"]), TrialContext(number, trial_dir, root, "ray"))
        values = check_result(result, objectives)
    except RejectTrial as exc:
        base |= {"rejected": str(exc) or "rejected", "elapsed_s": time.perf_counter() - start}
        tune.report({**{n: math.nan for n in names}, _REJECTED_KEY: base["rejected"],
                     _ATTRS_KEY: json.dumps(base)})
        return
    except Exception as exc:
        path = write_error(trial_dir, exc)
        _write_live(storage, study_name, number,
                    {"error": error_text(exc), "error_file": str(path),
                     "elapsed_s": time.perf_counter() - start})
        raise
    attrs = {}
    for key, value in jsonable(result.attrs).items():
        attrs[f"result_{key}" if key in RESERVED_ATTRS else key] = value
    attrs |= base | {"elapsed_s": time.perf_counter() - start}
    tune.report({**dict(zip(names, values, strict=True)), _ATTRS_KEY: json.dumps(attrs)})


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.config.get('_nas_number', 'x')}_{trial.trial_id}"


# -- the searcher on live storage ------------------------------------------------------------------
def _tune_verbosity() -> int:
    """Ray Tune's own console output: off by default (the search prints one line per trial);
    ``ENTROPIC_NAS_RAY_VERBOSE=1`` (or 2, 3) brings its status tables back."""
    raw = os.environ.get("ENTROPIC_NAS_RAY_VERBOSE", "0")
    try:
        level = min(max(int(raw), 0), 3)
    except ValueError:
        level = 0
    if level == 0:
        # Tune's newer console output prints its experiment tables at any verbosity; the
        # legacy reporter honours verbose=0 (a user's own setting of the variable wins)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    return level


class _LiveOptunaSearch(OptunaSearch):
    """``OptunaSearch`` on the user's storage that records our attrs, rejections and failures.

    Its state is the study itself: ``save`` writes nothing (no pickle in the run directory)
    and ``restore`` refuses.
    """

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        result = result or {}
        attrs = json.loads(result[_ATTRS_KEY]) if isinstance(result.get(_ATTRS_KEY), str) else {}
        for key, value in attrs.items():
            ot_trial.set_user_attr(key, value)
        metrics = self._metric if isinstance(self._metric, list) else [self._metric]
        values = [result.get(m) for m in metrics]
        study = self._ot_study
        assert study is not None
        if error or any(v is None for v in values):
            state, told = TrialState.FAIL, None
            frozen = study._storage.get_trial(ot_trial._trial_id)
            if "error" not in frozen.user_attrs:
                ot_trial.set_user_attr("error", "the trial raised in its Ray worker (see the "
                                                "worker log; error.txt in its trial_dir)")
        elif _REJECTED_KEY in result:
            state, told = TrialState.PRUNED, None
        else:
            state, told = TrialState.COMPLETE, [float(v) for v in values]
        try:
            study.tell(ot_trial, told, state=state, skip_if_finished=True)
        except Exception as exc:  # noqa: BLE001 - e.g. a NaN value: the trial becomes FAIL
            log.warning("trial %d: %s", ot_trial.number, exc)
            study.tell(ot_trial, None, state=TrialState.FAIL, skip_if_finished=True)
        self._completed_trials.add(trial_id)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the state is the study in the storage (see the module doc)."""

    def __getstate__(self) -> dict[str, Any]:
        """What Tune pickles into its run directory (``tuner.pkl``; never read back, see
        :meth:`restore`): every attribute that pickles, the rest (Optuna 5's NSGA-II sampler
        holds a thread lock, the live study a connection) as None."""
        from ray import cloudpickle

        state: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key in ("_storage", "_ot_study", "_sampler"):  # live objects; a URL with a password
                state[key] = None
                continue
            try:
                cloudpickle.dumps(value)
            except Exception:  # noqa: BLE001  (anything unpicklable is left out)
                value = None
            state[key] = value
        return state

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("the Ray backend resumes from the Optuna storage, not from "
                                  "pickled searcher state")


# -- Tune results -> records ----------------------------------------------------------------------
def _tune_to_record(config: Mapping[str, Any], metrics: Mapping[str, Any] | None, error: Any,
                    objectives: Sequence[Objective], run_dir: Path) -> TrialRecord | None:
    """One Tune trial as a record (number = the study's trial number); None if unfinished."""
    metrics = metrics or {}
    number = int(config["_nas_number"])
    attrs: dict[str, Any] = {"trial_dir": str(run_dir / "trials" / str(number)), "backend": "ray"}
    if isinstance(metrics.get(_ATTRS_KEY), str):
        attrs |= json.loads(metrics[_ATTRS_KEY])
    params = {k: v for k, v in config.items() if not k.startswith("_nas_")}
    if error is not None:
        path = Path(attrs["trial_dir"]) / "error.txt"
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()] \
            if path.is_file() else []
        attrs["error"] = lines[-1][:2000] if lines else str(error)
        return TrialRecord(number, "FAIL", {}, params, attrs)
    if _REJECTED_KEY in metrics:
        attrs["rejected"] = metrics[_REJECTED_KEY]
        return TrialRecord(number, "PRUNED", {}, params, attrs)
    names = [o.name for o in objectives]
    if not all(n in metrics for n in names):
        return None
    return TrialRecord(number, "COMPLETE", {n: float(metrics[n]) for n in names}, params, attrs)


class _Progress(tune.Callback):
    """Calls ``on_trial_end`` in the driver as Tune trials end."""

    def __init__(self, fn: TrialEndFn | None, objectives: list[Objective], run_dir: Path) -> None:
        self.fn = fn
        self.objectives = objectives
        self.run_dir = run_dir

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its run config: drop the hook
        return {**self.__dict__, "fn": None}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trial, "trial errored")

    def _emit(self, trial: Any, error: Any) -> None:
        if self.fn is None or "_nas_number" not in trial.config:
            return
        rec = _tune_to_record(trial.config, trial.last_result, error, self.objectives,
                              self.run_dir)
        if rec is not None:
            self.fn(rec)


# -- Ray lifetime ---------------------------------------------------------------------------------
def _init_ray(ray_address: str | None, num_cpus: int | None) -> bool:
    """Connect to / start Ray; returns True when this call started it (so we shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray_address:
        ray.init(address=ray_address, log_to_driver=True)
    else:
        # the raylet started here reads it: workers at nice 0, not Ray's default 15
        os.environ.setdefault("RAY_worker_niceness", "0")
        # local workers can import whatever this driver can (helper modules next to a script,
        # a test directory...): they get the driver's sys.path
        paths = [str(Path(p).resolve()) for p in sys.path if p and Path(p).is_dir()]
        env = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
                 runtime_env={"env_vars": env})
    return True


def default_concurrency(resources_per_trial: Mapping[str, float]) -> int:
    """How many trials the connected cluster can run at once with these resources each."""
    import ray

    have = ray.cluster_resources()
    fits = [math.floor(have.get(key.upper(), 0.0) / float(need) + 1e-9)
            for key, need in resources_per_trial.items() if float(need) > 0]
    return max(1, min(fits, default=1))


def check_shared_run_dir(run_dir: Path, *, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """Check that every alive Ray node sees ``run_dir`` (same path, same files).

    Writes a token file into ``run_dir`` and reads it back with a zero-CPU task pinned to each
    node. Returns one ``{"node_id", "node_ip", "host"}`` per node checked.

    Raises:
        SharedDiskError: naming the nodes that cannot read the token, and what must be shared.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    probe = run_dir / f".shared-check-{token}"
    probe.write_text(token)
    try:
        @ray.remote(num_cpus=0, max_retries=0)
        def _look(path: str, expect: str) -> dict[str, Any]:
            import socket

            p = Path(path)
            seen = p.read_text() if p.is_file() else None
            return {"host": socket.gethostname(), "ok": seen == expect,
                    "writable": os.access(p.parent, os.W_OK) if p.parent.is_dir() else False}

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = {n["NodeID"]: _look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node_id=n["NodeID"], soft=False)).remote(str(probe), token) for n in nodes}
        seen = dict(zip(refs, ray.get(list(refs.values()), timeout=timeout_s), strict=True))
    finally:
        probe.unlink(missing_ok=True)
    out, bad = [], []
    for n in nodes:
        s = seen[n["NodeID"]]
        row = {"node_id": n["NodeID"], "node_ip": n.get("NodeManagerAddress"), "host": s["host"]}
        out.append(row)
        if not (s["ok"] and s["writable"]):
            bad.append(f"{row['host']} ({row['node_ip']}): "
                       + ("cannot write there" if s["ok"] else "does not see it"))
    if bad:
        raise SharedDiskError(
            f"run directory {run_dir} is not shared with every Ray node: {'; '.join(bad)}. "
            "Trials read <run dir>/pretrained/ and write <run dir>/trials/<n>/: put --out on a "
            "filesystem mounted at the same path on every node (NFS, a cluster filesystem), or "
            "run on one node. The Optuna storage needs only to be reachable from the driver "
            "(use postgresql:// for several drivers or workers)."
        )
    return out


def _requeue_orphans(study: optuna.Study) -> list[int]:
    """Fail the trials a dead driver left RUNNING and re-queue each with its parameters."""
    storage = study._storage
    retry = RequeueTrial(max_retry=None)
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            storage.set_trial_user_attr(t._trial_id, "error", _ORPHAN_ERROR)
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        retry(study, storage.get_trial(t._trial_id))
        failed.append(t.number)
    if failed:
        log.warning("failed and re-queued trial(s) %s left RUNNING by the previous driver", failed)
    return failed


# -- entry point ----------------------------------------------------------------------------------
def run_ray(
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
    on_trial_end: TrialEndFn | None = None,
    ray_address: str | None = None,
    resources_per_trial: Mapping[str, float] | None = None,
    max_concurrent_trials: int | None = None,
    num_cpus: int | None = None,
    population_size: int | None = None,
    n_jobs: int | None = None,
) -> optuna.Study:
    """Run (or resume) the search as Ray Tune trials on the live Optuna study.

    Args:
        study_name: Study name in the storage (also names the Tune experiment dirs under
            ``run_dir/ray``, one per run).
        storage: None (``run_dir/study.db``), ``journal:PATH``, a database URL, or a ready
            storage (then the workers cannot write their start attrs; the driver still does).
        objectives, sample, evaluate, sampler, seed, on_trial_end, population_size: As for
            :func:`nas.backends.optuna.run_optuna` (see the module doc on picklability).
        n_trials: Total finished trials the study should hold, counted across resumes.
        run_dir: Run directory; trials work in ``run_dir/trials/<n>``. On several nodes it must
            be a shared filesystem (checked at start, :func:`check_shared_run_dir`).
        resume: Continue the study from the storage; without it an existing study is an error.
        ray_address: Address of a running cluster (``"auto"``, ``"HOST:6379"``,
            ``"ray://host:10001"``); None starts a local Ray with ``num_cpus`` CPUs.
        resources_per_trial: e.g. ``{"cpu": 1, "gpu": 0.5}`` (default one CPU).
        max_concurrent_trials: Cap on trials running at once (default: what the cluster's
            resources allow, :func:`default_concurrency`).
        num_cpus: CPUs of a locally started Ray (default: all).
        n_jobs: Ignored (accepted for call compatibility with ``run_optuna``).

    Returns:
        The study in the Optuna storage.
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    objectives = list(objectives)
    if n_trials < 0:
        raise ValueError(f"n_trials must be >= 0, got {n_trials}")
    clash = sorted({o.name for o in objectives} & _TUNE_RESERVED)
    if clash:
        raise ValueError(f"objective name(s) {clash} clash with Ray Tune result keys; rename them")
    store = open_storage(storage, run_dir)
    desc = describe_storage(storage, run_dir)
    url = None if isinstance(storage, BaseStorage) else desc
    study, existed = create_or_load_study(study_name=study_name, storage=store,
                                          objectives=objectives, resume=resume,
                                          storage_desc=desc, backend="ray")
    if existed:
        _requeue_orphans(study)
    trials = study.get_trials(deepcopy=False)
    remaining = n_trials - counted_trials(trials)
    log.info("study %r in %s: %d trial(s) counted, %d to run", study_name, desc,
             n_trials - max(remaining, 0), max(remaining, 0))
    if remaining <= 0:
        return study

    resources = dict(resources_per_trial or {"cpu": 1})
    trainable = tune.with_parameters(_trainable, evaluate=evaluate, objectives=objectives,
                                     run_dir=str(run_dir), storage=url, study_name=study_name)
    trainable = tune.with_resources(trainable, resources)
    started = _init_ray(ray_address, num_cpus)
    try:
        import ray

        if len([n for n in ray.nodes() if n.get("Alive")]) > 1:
            check_shared_run_dir(run_dir)
        concurrency = max_concurrent_trials or default_concurrency(resources)
        concurrency = min(concurrency, remaining)
        log.info("running %d trial(s), up to %d at once", remaining, concurrency)
        searcher = _LiveOptunaSearch(
            functools.partial(_space, sample),
            metric=[o.name for o in objectives],
            mode=["max" if o.direction == "maximize" else "min" for o in objectives],
            sampler=make_sampler(sampler, seed=None if seed is None else seed + len(trials),
                                 n_trials=n_trials, population_size=population_size),
            storage=store, study_name=study_name,
        )
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{uuid.uuid4().hex[:6]}"
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher, num_samples=remaining, max_concurrent_trials=concurrency,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                storage_path=str(run_dir / "ray"), name=f"{study_name}-{stamp}",
                callbacks=[_Progress(on_trial_end, objectives, run_dir)],
                failure_config=tune.FailureConfig(max_failures=0), verbose=_tune_verbosity(),
            ),
        )
        tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    return optuna.load_study(study_name=study_name, storage=store)


@dataclass
class RayBackend:
    """The :class:`~nas.backends.base.Backend` that runs trials as Ray Tune trials
    (:func:`run_ray`'s extra settings: the cluster, each trial's resources, concurrency)."""

    ray_address: str | None = None
    resources_per_trial: Mapping[str, float] | None = None
    max_concurrent_trials: int | None = None
    num_cpus: int | None = None
    n_jobs: int | None = None
    name: str = "ray"

    def run(self, job: SearchJob) -> optuna.Study:
        return run_ray(**job.kwargs(), ray_address=self.ray_address,
                       resources_per_trial=self.resources_per_trial,
                       max_concurrent_trials=self.max_concurrent_trials, num_cpus=self.num_cpus,
                       n_jobs=self.n_jobs)
