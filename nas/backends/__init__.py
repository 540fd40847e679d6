"""The same trial under two search engines.

``run_optuna`` runs trials in this process (threads) or in several processes sharing a
journal / RDB storage; ``run_ray`` runs them as Ray Tune trials in worker processes, local or on
a cluster, and mirrors every result into the same Optuna storage so that ``nas.pareto`` and
``nas.export`` read both alike. Ray is imported only when ``run_ray`` is used.
"""

from __future__ import annotations

from typing import Any

from .optuna import (
    StudyExistsError,
    counted_trials,
    default_storage_url,
    load_objectives,
    open_storage,
    run_optuna,
    trial_record,
)

__all__ = [
    "BACKENDS",
    "StudyExistsError",
    "counted_trials",
    "default_storage_url",
    "load_objectives",
    "open_storage",
    "run_optuna",
    "run_ray",
    "trial_record",
]

BACKENDS = ("optuna", "ray")


def __getattr__(name: str) -> Any:
    if name == "run_ray":  # keep `import nas.backends` free of Ray's start-up cost
        from .ray import run_ray

        return run_ray
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
