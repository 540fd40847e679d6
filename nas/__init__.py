"""Neural architecture search driven by entropic pruning: the part a user scripts.

Run a search, read its Pareto front, export a trial::

    from pathlib import Path

    import nas

    cfg = nas.load_config("configs/quickstart.yaml", {"search.trials": 8})
    summary = nas.run_search(cfg, Path("runs/quickstart"))     # as `entropic-nas search`
    front = nas.load_front("runs/quickstart", cfg.name)        # Pareto-front TrialRecords
    rec = nas.pick_trial(nas.load_records("runs/quickstart", cfg.name),
                         nas.load_objectives("runs/quickstart", cfg.name), "macs<=200k")
    nas.export_from_storage("runs/quickstart", cfg.name, "knee", Path("runs/q/export"))
    model, spec = nas.load_export("runs/q/export")             # arch.json + weights

``storage`` arguments take a run directory (its ``study.db``), a database URL or
``journal:PATH``. Names are imported on first use, so ``import nas`` stays cheap; the
submodules (``nas.config``, ``nas.search``, ``nas.pareto``, ``nas.export``, ``nas.testing``
...) hold the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "Objective",
    "RunConfig",
    "TrialRecord",
    "export_from_storage",
    "export_trial",
    "load_config",
    "load_export",
    "load_front",
    "load_objectives",
    "load_records",
    "pick_trial",
    "run_search",
]

_WHERE = {
    "Objective": "nas.search_types",
    "TrialRecord": "nas.search_types",
    "RunConfig": "nas.config",
    "load_config": "nas.config",
    "run_search": "nas.search",
    "export_from_storage": "nas.search",
    "load_front": "nas.pareto",
    "load_records": "nas.pareto",
    "load_objectives": "nas.pareto",
    "pick_trial": "nas.export",
    "export_trial": "nas.export",
    "load_export": "nas.export",
}

if TYPE_CHECKING:
    from nas.config import RunConfig, load_config
    from nas.export import export_trial, load_export, pick_trial
    from nas.pareto import load_front, load_objectives, load_records
    from nas.search import export_from_storage, run_search
    from nas.search_types import Objective, TrialRecord


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'nas' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
