"""What the two backends share: the job a backend runs, the ``Backend`` protocol, and the
trial-side helpers (sampler construction, result checks, error records).

A backend runs a :class:`SearchJob` - one study, its objectives, the ``sample`` / ``evaluate``
pair and a trial budget - and returns the study; :class:`nas.backends.optuna.OptunaBackend`
runs the trials in this process (or several sharing a storage),
:class:`nas.backends.ray.RayBackend` as Ray Tune trials. ``nas.search`` builds the job once
and hands it to the backend the config names.
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.storages import BaseStorage

from nas.search_types import EvaluateFn, Objective, SampleFn, TrialEndFn


@dataclass(frozen=True)
class SearchJob:
    """One search, as every backend runs it.

    Attributes:
        study_name: Study name in the storage.
        storage: None (``run_dir/study.db``), ``"journal:PATH"``, a database URL or a ready
            Optuna storage (:func:`nas.study.open_storage`).
        objectives: Names and directions; ``evaluate`` returns one value per name.
        sample: Define-by-run function suggesting a candidate on the Optuna trial.
        evaluate: ``evaluate(params, ctx) -> TrialResult``; may raise ``RejectTrial``.
        n_trials: Total finished trials the study should hold (:func:`nas.study.counted_trials`).
        run_dir: Run directory; trial ``n`` works in ``run_dir/trials/n``.
        sampler: ``"nsga2"`` | ``"tpe"`` | ``"random"`` or a sampler instance.
        seed: Sampler seed (a resumed study seeds with ``seed + len(trials)``).
        resume: Continue an existing study (else an existing one is an error).
        on_trial_end: Progress hook, called with each ended trial's record.
        population_size: NSGA-II population (default ``clamp(n_trials // 4, 4, 50)``).
    """

    study_name: str
    storage: str | BaseStorage | None
    objectives: Sequence[Objective]
    sample: SampleFn
    evaluate: EvaluateFn
    n_trials: int
    run_dir: Path
    sampler: str | optuna.samplers.BaseSampler = "nsga2"
    seed: int | None = 0
    resume: bool = False
    on_trial_end: TrialEndFn | None = None
    population_size: int | None = None

    def kwargs(self) -> dict[str, Any]:
        """The job as the engines' keyword arguments (``run_optuna(**job.kwargs(), ...)``);
        the values themselves, not copies."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Backend(Protocol):
    """A search engine: runs a job's trials until its study holds ``n_trials``."""

    name: str

    def run(self, job: SearchJob) -> optuna.Study:
        ...


SAMPLERS = ("nsga2", "tpe", "random")


RESERVED_ATTRS = ("trial_dir", "backend", "worker", "elapsed_s", "error", "error_file", "rejected",
                  "interrupted", "requeue")


_ERROR_MAX_CHARS = 2000


def make_sampler(
    name: str | optuna.samplers.BaseSampler,
    *,
    seed: int | None,
    n_trials: int,
    population_size: int | None = None,
) -> optuna.samplers.BaseSampler:
    """``"nsga2"`` | ``"tpe"`` | ``"random"`` (or a ready sampler, returned unchanged).

    NSGA-II's first generation is random sampling; Optuna's default population of 50 would make
    a 40-trial search a random search, so the default here is ``clamp(n_trials // 4, 4, 50)``.
    """
    if isinstance(name, optuna.samplers.BaseSampler):
        return name
    if name == "nsga2":
        pop = population_size or max(4, min(50, n_trials // 4))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=pop)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler {name!r}: expected one of {', '.join(SAMPLERS)}")


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (paths, numpy and torch scalars / arrays, sets...)."""
    return json.loads(json.dumps(value, default=_json_default, allow_nan=True))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "tolist"):  # numpy / torch
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)


def write_error(trial_dir: Path, exc: BaseException) -> Path:
    trial_dir.mkdir(parents=True, exist_ok=True)
    path = trial_dir / "error.txt"
    path.write_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return path


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _ERROR_MAX_CHARS else text[: _ERROR_MAX_CHARS - 3] + "..."


def check_result(result: Any, objectives: Sequence[Objective]) -> list[float]:
    """The objective values of ``result`` in search order; raise ValueError naming the problem."""
    names = [o.name for o in objectives]
    objs = getattr(result, "objectives", None)
    if not isinstance(objs, dict):
        raise TypeError(f"evaluate must return a TrialResult, got {type(result).__name__}")
    missing = [n for n in names if n not in objs]
    if missing:
        raise ValueError(f"evaluate returned no value for objective(s) {missing}; got {sorted(objs)}")
    values = [float(objs[n]) for n in names]
    bad = [n for n, v in zip(names, values, strict=True) if math.isnan(v)]
    if bad:
        raise ValueError(f"objective(s) {bad} are NaN")
    return values
