"""The contract between one trial and the search engines that run it.

A search is described by its :class:`Objective` list, a define-by-run :data:`SampleFn` that
suggests a candidate's parameters on an Optuna trial, and an :data:`EvaluateFn` that turns
those parameters into a :class:`TrialResult`. The engines (``nas.backends.optuna``,
``nas.backends.ray``) know nothing else about a trial; everything downstream (Pareto front,
W&B, export) reads :class:`TrialRecord` objects loaded back from the Optuna storage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import optuna

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class Objective:
    """One objective of a multi-objective search, e.g. ``Objective("macs", "minimize")``."""

    name: str
    direction: Direction

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(
                f"objective {self.name!r}: direction must be 'maximize' or 'minimize', "
                f"got {self.direction!r}"
            )


@dataclass
class TrialResult:
    """What ``evaluate`` returns.

    Attributes:
        objectives: One float per search objective, keyed by objective name.
        attrs: JSON-able extras (every metric, the arch spec dict, timings, paths...).
            Stored as Optuna user attributes; put big things in files under the trial dir.
    """

    objectives: dict[str, float]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialContext:
    """Where a trial runs: its number, its own directory, the run directory, the engine."""

    number: int
    trial_dir: Path
    run_dir: Path
    backend: str


class RejectTrial(Exception):
    """Raised by ``evaluate`` to reject a candidate on cheap objectives (e.g. MACs over budget).

    The trial is recorded as PRUNED with ``attrs["rejected"] = str(exc)``, not as a failure.
    """


SampleFn = Callable[["optuna.trial.BaseTrial"], dict[str, Any]]
EvaluateFn = Callable[[dict[str, Any], TrialContext], TrialResult]


@dataclass
class TrialRecord:
    """One finished (or failed / rejected) trial as read back from the Optuna storage.

    Attributes:
        number: Trial number in the study (also the ``trials/<number>`` directory for the
            Optuna backend; the Ray backend keeps its own dir in ``attrs["trial_dir"]``).
        state: ``"COMPLETE"``, ``"PRUNED"`` (rejected), ``"FAIL"``, ``"RUNNING"``, ``"WAITING"``.
        values: Objective values by objective name (empty unless COMPLETE).
        params: The sampled parameters.
        attrs: The trial's user attributes (``TrialResult.attrs`` plus ``error``,
            ``rejected``, ``trial_dir``...).
    """

    number: int
    state: str
    values: dict[str, float]
    params: dict[str, Any]
    attrs: dict[str, Any]

    @property
    def trial_dir(self) -> Path | None:
        d = self.attrs.get("trial_dir")
        return Path(d) if d else None


TrialEndFn = Callable[[TrialRecord], None]
"""Progress hook: called in the driver process after each trial ends."""
