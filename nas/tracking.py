"""Weights & Biases tracking: one run per trial, one summary run per search.

W&B is a viewer here, never the optimiser (sweeps take one metric; the search is Optuna/Ray).
Without an API key (``WANDB_API_KEY`` or a ``wandb login`` entry in ``~/.netrc``) and without
``WANDB_MODE``, runs are forced offline: nothing touches the network and nothing prompts; they
land in ``run_dir/wandb/offline-run-*`` and ``wandb sync run_dir/wandb`` uploads them later.

What a search writes:

- one run per trial (``job_type="trial"``), created **where the trial runs** (the Optuna
  process or the Ray worker) by :func:`tracked_evaluate`: config = the sampled params, then
  the numeric per-layer widths (``width.<layer>``); live per-epoch curves of fine-tuning and
  scratch training (``finetune/*``, ``scratch_e/*`` against their own epoch axes, logged by
  :func:`epoch_logger` hooks in the training loops); the per-layer pruning table; the
  widths plot; the summary (objectives, every numeric attr, ``state``). Failed and rejected
  trials get a run too, with ``state`` and ``error`` / ``rejected``, finished with exit code 1;
- one summary run (``job_type="summary"``) with a fixed id per study, so a resumed search
  updates it instead of adding a second one: a Table of all trials with ``is_pareto``, a
  scatter of the front, the baselines (unpruned, uniform), the Pareto files, and the exported
  model as an artifact (weights, ONNX, arch.json, card) with an alias for the pick.

Runs of one search share a group unique to the study (:func:`study_group`: its name plus a
hash of its storage), so two searches of the same config do not mix. A :class:`Tracker`
holds only plain settings, so it pickles into Ray workers.

Example:
    >>> tracker = Tracker(enabled=True, project="entropic-nas", group=study_group(url, "lenet"),
    ...                   run_dir=run_dir, tags=["lenet5", "mnist"])
    >>> evaluate = functools.partial(tracked_evaluate, evaluate=evaluate, tracker=tracker)
    >>> tracker.log_summary(records, objectives, pareto_paths, export_dir=export, pick="knee")
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import math
import netrc
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from nas.search_types import (
    EvaluateFn,
    Objective,
    RejectTrial,
    TrialContext,
    TrialRecord,
    TrialResult,
)

log = logging.getLogger(__name__)

# the W&B run of the trial running in this thread / process (set by tracked_evaluate)
_ACTIVE_RUN: contextvars.ContextVar[Any] = contextvars.ContextVar("nas_wandb_run",
                                                                  default=None)

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


def study_group(storage_url: str, study: str) -> str:
    """A W&B group unique to one study: its name and a short hash of its storage URL."""
    digest = hashlib.sha256(f"{storage_url}\0{study}".encode()).hexdigest()[:8]
    return f"{study}-{digest}"


def _run_id(*parts: Any) -> str:
    """A W&B run id (letters, digits, - and _; at most 64 characters) from ``parts``."""
    text = re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(str(p) for p in parts)).strip("-")
    if len(text) > 64:
        text = text[:55] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return text


def epoch_logger(prefix: str) -> Callable[[dict[str, Any]], None] | None:
    """An ``on_epoch_end`` hook for ``nas.train.train`` that logs each epoch's record to the
    W&B run of the current trial as ``<prefix>/<key>`` against ``<prefix>/epoch``; None when no
    trial run is active (tracking off), so callers can pass it straight through."""
    run = _ACTIVE_RUN.get()
    if run is None:
        return None
    run.define_metric(f"{prefix}/epoch")
    run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/epoch")

    def log(record: dict[str, Any]) -> None:
        row = {f"{prefix}/{k}": v for k, v in _numeric(record).items()}
        row[f"{prefix}/epoch"] = record.get("epoch", 0)
        run.log(row)

    return log


def tracked_evaluate(params: dict[str, Any], ctx: TrialContext, *, evaluate: EvaluateFn,
                     tracker: Tracker) -> TrialResult:
    """``evaluate`` inside a W&B run of its own, opened in the process that runs the trial.

    The run is live while the trial trains (per-epoch curves through :func:`epoch_logger`);
    a rejected or failed trial ends its run with its state and reason, then re-raises.
    """
    if not tracker.enabled:
        return evaluate(params, ctx)
    try:
        run = tracker.start_trial(ctx.number, params, backend=ctx.backend)
        token = _ACTIVE_RUN.set(run)
        try:
            result = evaluate(params, ctx)
        except RejectTrial as exc:
            _ACTIVE_RUN.reset(token)
            tracker.end_trial(run, state="PRUNED", reason=str(exc) or "rejected")
            raise
        except BaseException as exc:
            _ACTIVE_RUN.reset(token)
            tracker.end_trial(run, state="FAIL", reason=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        _ACTIVE_RUN.reset(token)
        tracker.end_trial(run, state="COMPLETE", result=result, trial_dir=ctx.trial_dir)
        return result
    finally:
        if ctx.backend == "ray":
            _teardown_service()


def _teardown_service() -> None:
    """Stop this process's W&B service while the process is alive. A Ray worker is ended
    without running Python's exit hooks in order, and W&B's own hook then fails on a closed
    socket: a 30-line ConnectionResetError traceback after every successful trial."""
    import wandb

    try:
        wandb.teardown()
    except Exception as exc:  # noqa: BLE001 - the trial's result stands either way
        log.debug("wandb teardown: %s", exc)


class Tracker:
    """W&B runs for a search; a disabled tracker does nothing.

    Args:
        enabled: False makes every method a no-op (and wandb is never imported).
        project: W&B project.
        entity: W&B entity (team / user); None = the account default.
        group: Run group, normally the study name.
        run_dir: Runs land in ``run_dir/wandb``.
        mode: ``"online"`` / ``"offline"`` / ``"disabled"``; None = :func:`resolve_mode`.
        tags: Tags for every run (``wandb.tags`` of the config plus family, dataset, backend).
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
    def _init(self, *, name: str, job_type: str, config: Mapping[str, Any] | None = None,
              run_id: str | None = None) -> Any:
        import wandb

        self.run_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(silent=True, disable_git=True, console="off",
                                  x_disable_stats=True, x_save_requirements=False)
        return wandb.init(
            project=self.project, entity=self.entity, group=self.group, name=name,
            job_type=job_type, config=dict(config or {}), dir=str(self.run_dir),
            mode=self.mode,  # type: ignore[arg-type]
            tags=self.tags or None, reinit="create_new", settings=settings,
            id=run_id, resume="allow" if run_id else None,
        )

    # -- per trial -----------------------------------------------------------------------------
    def start_trial(self, number: int, params: Mapping[str, Any], *, backend: str = "") -> Any:
        """Open the run ``trial-<number>`` (config = the sampled params); the caller ends it
        with :meth:`end_trial`. A retried or resumed trial number reuses its run id."""
        return self._init(name=f"trial-{number}", job_type="trial",
                          run_id=_run_id(self.group or "search", "trial", number),
                          config={"trial": number, "backend": backend, **flatten(params)})

    def end_trial(self, run: Any, *, state: str, result: TrialResult | None = None,
                  reason: str | None = None, trial_dir: str | Path | None = None,
                  widths_plot_path: str | Path | None = None) -> Path:
        """Summary, numeric widths, pruning table and widths plot; finish the run."""
        import wandb

        try:
            summary: dict[str, Any] = {"state": state}
            if reason:
                summary["error" if state == "FAIL" else "rejected"] = reason
            if result is not None:
                summary |= _numeric(result.attrs)
                summary |= {k: float(v) for k, v in result.objectives.items()}
                for key in ("error", "rejected"):
                    if isinstance(result.attrs.get(key), str):
                        summary[key] = result.attrs[key]
                widths = result.attrs.get("widths")
                if isinstance(widths, Mapping):  # numeric axes (parallel coordinates)
                    run.config.update({f"width.{k}": int(v) for k, v in widths.items()},
                                      allow_val_change=True)
                plot = widths_plot_path or result.attrs.get("widths_plot")
                if plot is not None and Path(plot).is_file():
                    run.log({"widths": wandb.Image(str(plot))})
            table = _layer_table(Path(trial_dir) / "report.json") if trial_dir else None
            if table is not None:
                run.log({"pruning_layers": wandb.Table(columns=list[str | int](table[0]),
                                                            data=table[1])})
            run.summary.update(summary)
            return Path(run.dir).parent
        finally:
            run.finish(exit_code=0 if state in ("COMPLETE", "PRUNED") else 1)

    def log_trial(self, number: int, params: Mapping[str, Any], result: TrialResult, *,
                  widths_plot_path: str | Path | None = None, state: str = "COMPLETE",
                  ) -> Path | None:
        """One finished trial as a run, logged after the fact (``tracked_evaluate`` is the
        live path). Returns the run's local directory (None when disabled)."""
        if not self.enabled:
            return None
        run = self.start_trial(number, params)
        return self.end_trial(run, state=state, result=result,
                              widths_plot_path=widths_plot_path)

    # -- per search ----------------------------------------------------------------------------
    def log_summary(self, records: Sequence[TrialRecord], objectives: Sequence[Objective],
                    pareto_paths: Mapping[str, str | Path] | Sequence[str | Path] | None = None,
                    arch_spec_path: str | Path | None = None, *,
                    baselines: Sequence[Mapping[str, Any]] = (),
                    export_dir: str | Path | None = None, pick: str | None = None,
                    ) -> Path | None:
        """The ``summary`` run (fixed id per study: a resumed search updates it): a table of
        all trials (+ ``is_pareto``), a scatter of the front, the baselines, the Pareto plot and
        files, and the exported model as an artifact (every file of ``export_dir``, else
        ``arch.json`` + card) with aliases ``latest`` and ``pick-<rule>``.

        Returns the run's local directory (None when disabled).
        """
        if not self.enabled:
            return None
        import wandb

        from nas.pareto import pareto_mask, record_widths
        from nas.plots import plot_axes

        mask = pareto_mask(records, objectives)
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
                         run_id=_run_id(self.group or "search", "summary"),
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
            if baselines:
                keys = sorted({k for b in baselines for k, v in b.items()
                               if isinstance(v, (int, float, str)) and not isinstance(v, bool)})
                logged["baselines"] = wandb.Table(
                    columns=list[str | int](keys), data=[[b.get(k) for k in keys] for b in baselines])
            run.log(logged)
            for p in paths:
                if p.suffix in (".csv", ".json", ".html"):
                    run.save(str(p), base_path=str(p.parent), policy="now")
            front = [r.number for r, m in zip(records, mask, strict=True) if m]
            states = [r.state for r in records]
            run.summary.update({"n_trials": len(records), "n_pareto": len(front),
                                "pareto_trials": front,
                                **{f"n_{st.lower()}": states.count(st)
                                   for st in ("COMPLETE", "FAIL", "PRUNED")},
                                **{f"baseline/{_slug(str(b.get('label', i)))}/{k}": v
                                   for i, b in enumerate(baselines)
                                   for k, v in _numeric(b).items()}})
            files = _export_files(export_dir, arch_spec_path)
            if files:
                name = _slug(f"{self.group or 'search'}-model")
                art = wandb.Artifact(name=name, type="model",
                                     metadata={"pareto_trials": front, "pick": pick})
                for f in files:
                    art.add_file(str(f), name=f.name)
                aliases = ["latest"] + ([_slug(f"pick-{pick}")] if pick else [])
                run.log_artifact(art, aliases=aliases)
            return Path(run.dir).parent
        finally:
            run.finish()

    @staticmethod
    def _paths(paths: Mapping[str, str | Path] | Sequence[str | Path] | None) -> list[Path]:
        if paths is None:
            return []
        values = paths.values() if isinstance(paths, Mapping) else paths
        return [Path(p) for p in values if Path(p).is_file()]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _export_files(export_dir: str | Path | None, arch_spec_path: str | Path | None
                  ) -> list[Path]:
    names = ("arch.json", "weights.safetensors", "model.onnx", "model.onnx.data",
             "MODEL_CARD.md")
    if export_dir is not None and Path(export_dir).is_dir():
        return [Path(export_dir, n) for n in names if Path(export_dir, n).is_file()]
    if arch_spec_path is not None and Path(arch_spec_path).is_file():
        spec = Path(arch_spec_path)
        return [p for p in (spec, spec.with_name("MODEL_CARD.md")) if p.is_file()]
    return []


def _layer_table(report: Path) -> tuple[list[str], list[list[Any]]] | None:
    """The per-layer pruning report of a trial (``report.json`` ``layers``) as table rows."""
    try:
        layers = json.loads(report.read_text()).get("layers") or []
    except (OSError, ValueError):
        return None
    rows = [flatten(layer) for layer in layers if isinstance(layer, Mapping)]
    cols = [k for k in dict.fromkeys(k for r in rows for k in r)
            if all(isinstance(r.get(k), (int, float, str, bool, type(None))) for r in rows)]
    if not rows or not cols:
        return None
    return cols, [[r.get(c) for c in cols] for r in rows]
