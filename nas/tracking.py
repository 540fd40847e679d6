"""Weights & Biases tracking: one run per trial, one summary run per search.

W&B is a viewer here, never the optimiser (sweeps take one metric; the search is Optuna/Ray).
Without an API key (``WANDB_API_KEY`` or a ``wandb login`` entry in ``~/.netrc``) and without
``WANDB_MODE``, runs are forced offline: nothing touches the network and nothing prompts; they
land in ``run_dir/wandb/offline-run-*`` and ``wandb sync run_dir/wandb`` uploads them later.

A :class:`Tracker` holds only plain settings, so it pickles into Ray workers; each trial opens
its own run there (``reinit="create_new"``) and finishes it.

Example:
    >>> tracker = Tracker(enabled=True, project="entropic-nas", group="lenet", run_dir=run_dir)
    >>> tracker.log_trial(3, params, result, widths_plot_path=trial_dir / "widths.png")
    >>> tracker.log_summary(records, objectives, pareto_paths, arch_spec_path=export / "arch.json")
"""

from __future__ import annotations

import math
import netrc
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from nas.search_types import Objective, TrialRecord, TrialResult

_MODES = ("online", "offline", "disabled")


def has_wandb_credentials() -> bool:
    """An API key in the environment or in ``~/.netrc`` for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        auth = netrc.netrc(os.environ.get("NETRC")).authenticators(host or "api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(auth and auth[2])


def resolve_mode(mode: str | None = None) -> str:
    """``mode``, else ``$WANDB_MODE``, else online with credentials and offline without."""
    mode = mode or os.environ.get("WANDB_MODE") or None
    if mode is None:
        return "online" if has_wandb_credentials() else "offline"
    if mode == "dryrun":
        return "offline"
    if mode not in _MODES:
        raise ValueError(f"W&B mode {mode!r}: expected one of {', '.join(_MODES)}")
    return mode


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b": v}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out |= flatten(v, f"{key}.")
        else:
            out[key] = v
    return out


def _numeric(d: Mapping[str, Any]) -> dict[str, float | int | bool]:
    return {k: v for k, v in flatten(d).items()
            if isinstance(v, (int, float, bool)) and not (isinstance(v, float) and math.isnan(v))}


class Tracker:
    """W&B runs for a search; a disabled tracker does nothing.

    Args:
        enabled: False makes every method a no-op (and wandb is never imported).
        project: W&B project.
        entity: W&B entity (team / user); None = the account default.
        group: Run group, normally the study name.
        run_dir: Runs land in ``run_dir/wandb``.
        mode: ``"online"`` / ``"offline"`` / ``"disabled"``; None = :func:`resolve_mode`.
        tags: Tags for every run.
    """

    def __init__(self, enabled: bool, project: str = "entropic-nas", entity: str | None = None,
                 group: str | None = None, run_dir: str | Path = ".", *, mode: str | None = None,
                 tags: Sequence[str] = ()) -> None:
        self.enabled = bool(enabled)
        self.project = project
        self.entity = entity
        self.group = group
        self.run_dir = Path(run_dir).resolve()
        self.tags = list(tags)
        self.mode = resolve_mode(mode) if self.enabled else "disabled"
        if self.enabled:
            os.environ.setdefault("WANDB_SILENT", "true")
            os.environ.setdefault("WANDB_DISABLE_GIT", "true")

    # -- plumbing ------------------------------------------------------------------------------
    def _init(self, *, name: str, job_type: str, config: Mapping[str, Any] | None = None) -> Any:
        import wandb

        self.run_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(silent=True, disable_git=True, console="off",
                                  x_disable_stats=True, x_save_requirements=False)
        return wandb.init(
            project=self.project, entity=self.entity, group=self.group, name=name,
            job_type=job_type, config=dict(config or {}), dir=str(self.run_dir),
            mode=self.mode,  # type: ignore[arg-type]
            tags=self.tags or None, reinit="create_new", settings=settings,
        )

    # -- per trial -----------------------------------------------------------------------------
    def log_trial(self, number: int, params: Mapping[str, Any], result: TrialResult, *,
                  widths_plot_path: str | Path | None = None, state: str = "COMPLETE",
                  ) -> Path | None:
        """One run ``trial-<number>``: config = params, summary = objectives + numeric attrs.

        Returns the run's local directory (None when disabled).
        """
        if not self.enabled:
            return None
        import wandb

        run = self._init(name=f"trial-{number}", job_type="trial",
                         config={"trial": number, **flatten(params)})
        try:
            summary: dict[str, Any] = {"trial": number, "state": state}
            summary |= _numeric(result.attrs)
            summary |= {k: float(v) for k, v in result.objectives.items()}
            for key in ("error", "rejected"):
                if isinstance(result.attrs.get(key), str):
                    summary[key] = result.attrs[key]
            run.summary.update(summary)
            if widths_plot_path is not None and Path(widths_plot_path).is_file():
                run.log({"widths": wandb.Image(str(widths_plot_path))})
            return Path(run.dir).parent
        finally:
            run.finish()

    # -- per search ----------------------------------------------------------------------------
    def log_summary(self, records: Sequence[TrialRecord], objectives: Sequence[Objective],
                    pareto_paths: Mapping[str, str | Path] | Sequence[str | Path] | None = None,
                    arch_spec_path: str | Path | None = None) -> Path | None:
        """One ``summary`` run: a table of all trials (+ ``is_pareto``), an accuracy-vs-MACs
        scatter, the Pareto plot and files, and the exported ``arch.json`` as an artifact.

        Returns the run's local directory (None when disabled).
        """
        if not self.enabled:
            return None
        import wandb

        from nas.pareto import _pareto_mask, plot_axes, record_widths

        mask = _pareto_mask(records, objectives)
        params = sorted({k for r in records for k, v in r.params.items()
                         if isinstance(v, (int, float, str, bool))})
        widths = sorted({k for r in records for k in (record_widths(r) or {})})
        columns: list[str | int] = ["trial", "state", *[o.name for o in objectives], "is_pareto",
                   *[f"param.{p}" for p in params], *[f"width.{w}" for w in widths]]
        rows = []
        for r, on_front in zip(records, mask, strict=True):
            w = record_widths(r) or {}
            rows.append([r.number, r.state, *[r.values.get(o.name) for o in objectives],
                         bool(on_front), *[r.params.get(p) for p in params],
                         *[w.get(k) for k in widths]])
        run = self._init(name="summary", job_type="summary",
                         config={"objectives": [f"{o.name}:{o.direction}" for o in objectives],
                                 "n_trials": len(records)})
        try:
            table = wandb.Table(columns=columns, data=rows)
            logged: dict[str, Any] = {"trials": table}
            if len(objectives) >= 2:
                x, y = plot_axes(objectives)
                done = [row for row in rows if row[1] == "COMPLETE"]
                scatter_table = wandb.Table(columns=columns, data=done)
                logged["pareto_scatter"] = wandb.plot.scatter(
                    scatter_table, x=x.name, y=y.name, title=f"{y.name} vs {x.name}")
            paths = self._paths(pareto_paths)
            png = next((p for p in paths if p.suffix == ".png"), None)
            if png is not None:
                logged["pareto_plot"] = wandb.Image(str(png))
            run.log(logged)
            for p in paths:
                if p.suffix in (".csv", ".json", ".html"):
                    run.save(str(p), base_path=str(p.parent), policy="now")
            front = [r.number for r, m in zip(records, mask, strict=True) if m]
            run.summary.update({"n_trials": len(records), "n_pareto": len(front),
                                "pareto_trials": front})
            if arch_spec_path is not None and Path(arch_spec_path).is_file():
                name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.group or 'search'}-arch")
                art = wandb.Artifact(name=name, type="architecture",
                                     metadata={"pareto_trials": front})
                spec = Path(arch_spec_path)
                art.add_file(str(spec), name="arch.json")
                card = spec.with_name("MODEL_CARD.md")
                if card.is_file():
                    art.add_file(str(card), name="MODEL_CARD.md")
                run.log_artifact(art)
            return Path(run.dir).parent
        finally:
            run.finish()

    @staticmethod
    def _paths(paths: Mapping[str, str | Path] | Sequence[str | Path] | None) -> list[Path]:
        if paths is None:
            return []
        values = paths.values() if isinstance(paths, Mapping) else paths
        return [Path(p) for p in values if Path(p).is_file()]
