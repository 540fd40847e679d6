"""The same trial under two search engines.

A backend (:class:`Backend`) runs a :class:`SearchJob` on one Optuna study (:mod:`nas.study`):
:class:`OptunaBackend` / ``run_optuna`` runs trials in this process (threads) or in several
processes sharing a journal / RDB storage; :class:`RayBackend` / ``run_ray`` runs them as
Ray Tune trials in worker processes, local or on a cluster, and mirrors every result into the
same Optuna storage so that ``nas.pareto`` and ``nas.export`` read both alike. Ray is
imported only when ``RayBackend`` / ``run_ray`` is used.
"""

from __future__ import annotations

from typing import Any

from nas.study import (
    StudyExistsError,
    counted_trials,
    default_storage_url,
    load_objectives,
    open_storage,
    trial_record,
)

from .base import Backend, SearchJob
from .optuna import OptunaBackend, run_optuna

__all__ = [
    "BACKENDS",
    "Backend",
    "OptunaBackend",
    "RayBackend",
    "SearchJob",
    "StudyExistsError",
    "counted_trials",
    "default_storage_url",
    "load_objectives",
    "make_backend",
    "open_storage",
    "run_optuna",
    "run_ray",
    "trial_record",
]

BACKENDS = ("optuna", "ray")


def make_backend(name: str, **settings: Any) -> Backend:
    """The backend called ``name`` (``"optuna"`` | ``"ray"``) with its own settings."""
    if name == "optuna":
        return OptunaBackend(**settings)
    if name == "ray":
        from .ray import RayBackend

        return RayBackend(**settings)
    raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")


def __getattr__(name: str) -> Any:
    if name in ("run_ray", "RayBackend"):  # keep `import nas.backends` free of Ray's start-up
        from . import ray

        return getattr(ray, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
