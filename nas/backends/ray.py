"""Run a search with Ray Tune: trials in worker processes, locally or on a cluster.

Ray Tune drives the trials (``OptunaSearch`` with one metric per objective proposes them from
the same define-by-run ``sample``), and when the run ends every finished Tune trial is mirrored
into the Optuna storage as a study of the same name, so ``nas.pareto`` and ``nas.export`` read
both engines alike. The Tune experiment under ``run_dir/ray/<study_name>`` is the source of truth
for this backend: the mirror study is rebuilt from it after each run (a study made by the Optuna
backend is never touched).

Picklability. Trials run in other processes: ``evaluate`` is shipped to them with cloudpickle
and must be importable there (a module-level function or ``functools.partial`` of one, in a
package installed on every node; a locally started Ray gives its workers this process's
``sys.path``). ``sample`` runs in this process but is saved with the
searcher's state using plain ``pickle``, so it too must be a module-level function or a partial
of one - not a lambda or a closure.

Trial counting. ``n_trials`` is Tune's ``num_samples``: the total number of trials of the
experiment. A resumed experiment keeps the total it was started with (Tune restores it);
unfinished trials continue and errored ones run again (``resume_errored=True``).

Rejected trials (:class:`RejectTrial`) report NaN objectives so that Tune's metric check passes;
the searcher records them as failed proposals, the mirror as PRUNED with ``attrs["rejected"]``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
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

from .optuna import (
    RESERVED_ATTRS,
    StudyExistsError,
    _this_worker,
    check_result,
    create_or_load_study,
    describe_storage,
    error_text,
    jsonable,
    make_sampler,
    open_storage,
    write_error,
)

log = logging.getLogger(__name__)

# keys of Tune results / our own config keys that an objective may not be called
_TUNE_RESERVED = {"done", "config", "trial_id", "training_iteration", "time_total_s", "timestamp",
                  "pid", "hostname", "node_ip", "date", "time_this_iter_s", "experiment_tag",
                  "checkpoint_dir_name", "time_since_restore", "iterations_since_restore"}
_ATTRS_KEY = "_nas_attrs"
_REJECTED_KEY = "_nas_rejected"


# -- what runs where -----------------------------------------------------------------------------
def _space(sample: SampleFn, trial: Any) -> dict[str, Any]:
    """Define-by-run space for OptunaSearch (runs in the driver).

    Returns the candidate as Tune constants: the params dict as ``sample`` returned it (keys
    with "/" would otherwise be unflattened by Tune), the searcher's trial number, and the
    suggested params with their distributions so that the mirror can rebuild Optuna trials.
    """
    params = sample(trial)
    return {
        "_nas_params": params,
        "_nas_number": int(trial.number),
        "_nas_suggested": dict(trial.params),
        "_nas_distributions": {k: distribution_to_json(d) for k, d in trial.distributions.items()},
    }


def _trainable(config: dict[str, Any], *, evaluate: EvaluateFn, objectives: list[Objective],
               run_dir: str) -> None:
    """The Tune function trainable (runs in a worker process): one evaluate, one report."""
    number = int(config["_nas_number"])
    root = Path(run_dir)
    trial_dir = root / "trials" / str(number)
    trial_dir.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {"trial_dir": str(trial_dir), "backend": "ray",
                            "ray_trial_id": tune.get_context().get_trial_id(),
                            "worker": _this_worker()}
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
        write_error(trial_dir, exc)
        raise
    attrs = {}
    for key, value in jsonable(result.attrs).items():
        attrs[f"result_{key}" if key in RESERVED_ATTRS else key] = value
    attrs |= base | {"elapsed_s": time.perf_counter() - start}
    tune.report({**dict(zip(names, values, strict=True)), _ATTRS_KEY: json.dumps(attrs)})


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.config.get('_nas_number', 'x')}_{trial.trial_id}"


# -- Tune results -> records -----------------------------------------------------------------------
def _error_of(attrs: Mapping[str, Any], error: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    path = Path(attrs["trial_dir"]) / "error.txt" if attrs.get("trial_dir") else None
    if path is not None and path.exists():
        out["error_file"] = str(path)
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        if lines:
            out["error"] = lines[-1][:2000]
    if "error" not in out:
        cause = getattr(error, "cause", None) or error
        out["error"] = error_text(cause) if isinstance(cause, BaseException) else str(cause)[:2000]
    return out


def _tune_to_record(config: Mapping[str, Any], metrics: Mapping[str, Any] | None, error: Any,
                    objectives: Sequence[Objective], run_dir: Path) -> TrialRecord | None:
    """One Tune trial as a record (number = the searcher's trial number); None if unfinished."""
    metrics = metrics or {}
    number = int(config["_nas_number"])
    attrs: dict[str, Any] = {"trial_dir": str(run_dir / "trials" / str(number)), "backend": "ray"}
    if isinstance(metrics.get(_ATTRS_KEY), str):
        attrs |= json.loads(metrics[_ATTRS_KEY])
    params = dict(config.get("_nas_suggested", {}))
    if error is not None:
        return TrialRecord(number, "FAIL", {}, params, attrs | _error_of(attrs, error))
    if _REJECTED_KEY in metrics:
        attrs["rejected"] = metrics[_REJECTED_KEY]
        return TrialRecord(number, "PRUNED", {}, params, attrs)
    names = [o.name for o in objectives]
    if not all(n in metrics for n in names):
        return None  # never reported: unfinished, will run on resume
    values = {n: float(metrics[n]) for n in names}
    return TrialRecord(number, "COMPLETE", values, params, attrs)


def _frozen(record: TrialRecord, config: Mapping[str, Any],
            objectives: Sequence[Objective]) -> optuna.trial.FrozenTrial:
    dists = {k: json_to_distribution(v) for k, v in config.get("_nas_distributions", {}).items()}
    state = TrialState[record.state]
    values = [record.values[o.name] for o in objectives] if state == TrialState.COMPLETE else None
    return optuna.trial.create_trial(
        state=state, params=record.params, distributions=dists, values=values,
        user_attrs=record.attrs | {"ray_number": record.number},
    )


def mirror_to_optuna(results: Sequence[tuple[Mapping[str, Any], Mapping[str, Any] | None, Any]],
                     *, study_name: str, storage: BaseStorage, objectives: Sequence[Objective],
                     run_dir: Path, storage_desc: str = "") -> optuna.Study:
    """(Re)write the mirror study from ``(config, metrics, error)`` of every Tune trial."""
    if study_name in optuna.study.get_all_study_names(storage):
        study = optuna.load_study(study_name=study_name, storage=storage)
        if study.user_attrs.get("backend") != "ray":
            raise StudyExistsError(
                f"study {study_name!r} in {storage_desc or 'the storage'} was made by the "
                f"{study.user_attrs.get('backend', 'optuna')} backend; use another study name"
            )
        optuna.delete_study(study_name=study_name, storage=storage)
    study, _ = create_or_load_study(study_name=study_name, storage=storage, objectives=objectives,
                                    resume=False, storage_desc=storage_desc, backend="ray")
    rows = []
    for config, metrics, error in results:
        if "_nas_number" not in config:
            continue
        rec = _tune_to_record(config, metrics, error, objectives, run_dir)
        if rec is not None:
            rows.append((rec.number, rec, config))
    for _, rec, config in sorted(rows, key=lambda r: r[0]):
        study.add_trial(_frozen(rec, config, objectives))
    return study


class _Progress(tune.Callback):
    """Calls ``on_trial_end`` in the driver as Tune trials end.

    Tune pickles its run config (callbacks included) into the experiment; the hook is not
    pickled with it (it may hold a progress bar, a lock...) and is attached afresh on restore.
    """

    def __init__(self, fn: TrialEndFn | None, objectives: list[Objective], run_dir: Path) -> None:
        self.fn = fn
        self.objectives = objectives
        self.run_dir = run_dir

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "fn": None}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trial, "trial errored")

    def _emit(self, trial: Any, error: Any) -> None:
        if self.fn is None:
            return
        rec = _tune_to_record(trial.config, trial.last_result, error, self.objectives,
                              self.run_dir)
        if rec is not None:
            self.fn(rec)


def _attach_progress(tuner: tune.Tuner, progress: _Progress) -> None:
    """Swap the restored (hook-less) progress callback for this run's."""
    local = getattr(tuner, "_local_tuner", None)  # Tuner.restore takes no run_config
    if local is None or not hasattr(local, "get_run_config"):
        log.warning("on_trial_end is not called for a resumed experiment on this Ray version")
        return
    config = local.get_run_config()
    others = [c for c in (config.callbacks or []) if not isinstance(c, _Progress)]
    config.callbacks = [*others, progress]


# -- Ray lifetime --------------------------------------------------------------------------------------
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
        # local workers can import whatever this driver can (helper modules next to a script,
        # a test directory...): they get the driver's sys.path
        paths = [str(Path(p).resolve()) for p in sys.path if p and Path(p).is_dir()]
        env = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
                 runtime_env={"env_vars": env})
    return True


# -- entry point -------------------------------------------------------------------------------------
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
    """Run (or resume) the search as a Ray Tune experiment and mirror it into Optuna storage.

    Args:
        study_name: Tune experiment name (``run_dir/ray/<study_name>``) and mirror study name.
        storage: Optuna storage of the mirror: None (``run_dir/study.db``), ``journal:PATH`` or
            a database URL.
        objectives, sample, evaluate, sampler, seed, on_trial_end, population_size: As for
            :func:`nas.backends.optuna.run_optuna` (see the module doc on picklability).
        n_trials: Tune ``num_samples``: the experiment's total number of trials.
        run_dir: Run directory; trials work in ``run_dir/trials/<n>``. Must be on storage that
            every node sees for a multi-node cluster.
        resume: Continue the Tune experiment (``Tuner.restore(..., resume_errored=True)``);
            without it an existing experiment or study is an error.
        ray_address: Address of a running cluster (``"auto"``, ``"ray://host:10001"``); None
            starts a local Ray with ``num_cpus`` CPUs (no dashboard).
        resources_per_trial: e.g. ``{"cpu": 1, "gpu": 0.5}`` (default one CPU).
        max_concurrent_trials: Cap on trials running at once (default: as resources allow).
        num_cpus: CPUs of a locally started Ray (default: all).
        n_jobs: Ignored (accepted for call compatibility with ``run_optuna``).

    Returns:
        The mirror study in the Optuna storage.
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    objectives = list(objectives)
    clash = sorted({o.name for o in objectives} & _TUNE_RESERVED)
    if clash:
        raise ValueError(f"objective name(s) {clash} clash with Ray Tune result keys; rename them")
    store = open_storage(storage, run_dir)
    desc = describe_storage(storage, run_dir)
    exp_path = run_dir / "ray" / study_name
    restorable = tune.Tuner.can_restore(str(exp_path))
    existing = study_name in optuna.study.get_all_study_names(store)
    if not resume and (restorable or existing):
        where = exp_path if restorable else desc
        raise StudyExistsError(
            f"search {study_name!r} already exists in {where}; pass --resume to continue it, "
            "or pick another --study-name / --out"
        )
    if existing:
        prior = optuna.load_study(study_name=study_name, storage=store)
        if prior.user_attrs.get("backend") != "ray":
            raise StudyExistsError(
                f"study {study_name!r} in {desc} was made by the "
                f"{prior.user_attrs.get('backend', 'optuna')} backend; resume it with that backend"
            )
        if not restorable and prior.get_trials(deepcopy=False):
            raise FileNotFoundError(
                f"cannot resume {study_name!r}: its Ray Tune experiment {exp_path} is missing"
            )

    trainable = tune.with_parameters(_trainable, evaluate=evaluate, objectives=objectives,
                                     run_dir=str(run_dir))
    trainable = tune.with_resources(trainable, dict(resources_per_trial or {"cpu": 1}))
    progress = _Progress(on_trial_end, objectives, run_dir)
    started = _init_ray(ray_address, num_cpus)
    try:
        if restorable:
            log.info("resuming Ray Tune experiment %s", exp_path)
            tuner = tune.Tuner.restore(str(exp_path), trainable, resume_errored=True)
            _attach_progress(tuner, progress)
        else:
            searcher = OptunaSearch(
                functools.partial(_space, sample),
                metric=[o.name for o in objectives],
                mode=["max" if o.direction == "maximize" else "min" for o in objectives],
                sampler=make_sampler(sampler, seed=seed, n_trials=n_trials,
                                     population_size=population_size),
            )
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=searcher, num_samples=n_trials,
                    max_concurrent_trials=max_concurrent_trials,
                    trial_dirname_creator=_trial_dirname,
                ),
                run_config=tune.RunConfig(
                    storage_path=str(run_dir / "ray"), name=study_name, callbacks=[progress],
                    failure_config=tune.FailureConfig(max_failures=0), verbose=1,
                ),
            )
        grid = tuner.fit()
        results = [(r.config or {}, r.metrics, r.error) for r in (grid[i] for i in range(len(grid)))]
    finally:
        if started:
            import ray

            ray.shutdown()
    if restorable and len(results) != n_trials:
        log.warning("the restored experiment keeps its total of %d trials (asked: %d)",
                    len(results), n_trials)
    return mirror_to_optuna(results, study_name=study_name, storage=store, objectives=objectives,
                            run_dir=run_dir, storage_desc=desc)
