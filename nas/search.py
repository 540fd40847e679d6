"""A whole search: pre-train once (cached), run the trials on Optuna or Ray Tune, train the
uniform-scaling baseline, write the Pareto front, log to W&B, export the winner.

Run directory (``--out runs/NAME``)::

    config.yaml  study.db  pretrained/  trials/<n>/  baselines.json
    pareto.csv .json .png .html  export/  wandb/  summary.json

Every argument is checked before any work (``nas.validate.preflight_search``); the resolved
``config.yaml`` is written only once the checks pass, so a failing run never touches a
finished one. Workers sharing a run directory take file locks (``.NAME.lock``): one
pre-trains while the others wait and reuse its checkpoint; ``baselines.json`` and the final
results (Pareto files, export, summary) are written by one worker at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import search_spaces
from pruning.cost import CostModel
from pruning.measure import count_macs, count_params
from search_spaces import ArchSpec
from search_spaces.space import SearchSpace, default_space, sample_params

from . import pareto as pareto_mod
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import RunConfig, SpaceSection
from .search_types import Objective, TrialRecord, TrialResult
from .storage import redact
from .study import run_lock
from .train import TrainHooks, evaluate, hooked_accuracy, hooked_train, using_hooks
from .trial import (
    SearchSetup,
    base_spec,
    consumer_map,
    evaluate_candidate,
    load_data,
    measure_model,
    train_config,
    val_loader,
)

console = Console(stderr=True, soft_wrap=True)  # log lines are never broken mid-sentence


def objectives_for(cfg: RunConfig) -> list[Objective]:
    return [Objective("accuracy", "maximize"), Objective(cfg.search.cost, "minimize")]


def _key(cfg: RunConfig) -> str:
    parts = {k: cfg.model_dump(mode="json")[k] for k in ("model", "data", "train")}
    if cfg.model.weights and Path(cfg.model.weights).is_file():  # the file's content counts
        parts["weights_sha256"] = hashlib.sha256(Path(cfg.model.weights).read_bytes()).hexdigest()
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def absolute_paths(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its file paths (``data.root``, ``model.arch``, ``model.weights``) made
    absolute against this process's working directory, as the user meant them; a Ray
    worker runs elsewhere."""
    data = cfg.data
    if data.root and not Path(data.root).is_absolute() and "://" not in data.root:
        data = data.model_copy(update={"root": str(Path(data.root).absolute())})
    model = cfg.model
    for field in ("arch", "weights"):
        value = getattr(model, field)
        if value and not Path(value).is_absolute():
            model = model.model_copy(update={field: str(Path(value).absolute())})
    return cfg.model_copy(update={"data": data, "model": model})


def with_model(cfg: RunConfig, model: Any, run_dir: Path) -> RunConfig:
    """``cfg`` with its model section replaced by a factory or a trained module (see
    :func:`run_search`); a module's weights are written to ``run_dir/user_weights.safetensors``
    and named as ``model.weights``."""
    import copy

    from safetensors.torch import save_file
    from torch import nn

    from search_spaces.generic import register_callable

    weights = cfg.model.weights
    if isinstance(model, nn.Module):
        template = copy.deepcopy(model).to("cpu").eval()
        name = register_callable(lambda **_kw: copy.deepcopy(template),
                                 f"{type(model).__module__}.{type(model).__qualname__}")
        run_dir.mkdir(parents=True, exist_ok=True)
        weights = str(run_dir / "user_weights.safetensors")
        save_file({k: v.detach().contiguous().clone() for k, v in template.state_dict().items()},
                  weights)
    elif callable(model):
        name = register_callable(model)
    else:
        raise TypeError(f"run_search(model=...): expected an nn.Module or a factory, got "
                        f"{type(model).__name__}")
    section = cfg.model.model_copy(update={"family": name, "torchvision": None, "timm": None,
                                           "factory": None, "kwargs": {}, "weights": weights})
    return cfg.model_copy(update={"model": section})


def pretrained_checkpoint(cfg: RunConfig, run_dir: Path, *, progress: bool = True) -> Path:
    """Train the base model once per (model, data, train) config; reuse it afterwards.

    Workers started together on one run directory: the first takes the lock and trains, the
    others wait for it and then find the finished checkpoint.
    """
    with run_lock(run_dir, "pretrained"):
        return _pretrained_checkpoint(cfg, run_dir, progress=progress)


def _pretrained_checkpoint(cfg: RunConfig, run_dir: Path, *, progress: bool = True) -> Path:
    loaders = load_data(cfg)
    stem = run_dir / "pretrained" / "model"
    key = _key(cfg)
    if stem.with_suffix(".json").exists():
        try:
            ckpt = load_checkpoint(stem)
            if (ckpt.config or {}).get("cache_key") == key:
                return stem
            console.print("[yellow]pretrained checkpoint is for another config: retraining[/]")
        except CheckpointError as exc:
            trials = run_dir / "trials"
            if trials.is_dir() and any(trials.iterdir()):
                # its trials were pruned from this model: a retrain would mix two base models
                # in one study
                raise CheckpointError(
                    f"{stem}: the run's pre-trained model is damaged ({exc}), and trials were "
                    f"made from it; restore {stem.parent} from a copy, or start a new --out"
                ) from None
            console.print(f"[yellow]pretrained checkpoint unusable ({exc}): retraining[/]")
    spec = base_spec(cfg, loaders)
    torch.manual_seed(cfg.train.seed)
    model = search_spaces.build(spec)
    if cfg.model.weights:
        from .checkpoint import load_weights_into

        load_weights_into(model, cfg.model.weights)
        val = hooked_accuracy(model, val_loader(loaders))
        console.print(f"[bold]base model[/] {spec.family}: the weights of {cfg.model.weights} "
                      f"(val acc {val:.4f}); no pre-training")
        save_checkpoint(stem, model, spec,
                        config={"cache_key": key, **cfg.model_dump(mode="json")},
                        metrics={"val_acc": val, "weights_from": cfg.model.weights})
        return stem
    console.print(f"[bold]pre-training[/] {spec.family} on {cfg.data.name} "
                  f"for {cfg.train.epochs} epochs")
    model, res = hooked_train(model, loaders, train_config(cfg.train, progress=progress),
                              checkpoint_dir=run_dir / "pretrained" / "state", resume=True,
                              spec=spec)
    save_checkpoint(stem, model, spec, config={"cache_key": key, **cfg.model_dump(mode="json")},
                    metrics={"val_acc": res.val_acc, "seconds_per_epoch": res.seconds_per_epoch})
    return stem


def search_space(cfg: RunConfig, residual_keys: list[str]) -> SearchSpace:
    sec: SpaceSection = cfg.search.space
    space = default_space(cfg.model.family, groups=sec.groups, exclude_keys=residual_keys)
    changes: dict[str, Any] = {
        "selection": tuple(sec.selection),
        "prune_group_prob": sec.prune_group_prob,
        "drop_block_prob": sec.drop_block_prob,
        "orders": tuple(sec.orders),
        "schedules": tuple(sec.schedules),
        "finetune_epochs": tuple(sec.finetune_epochs or (cfg.finetune.epochs, cfg.finetune.epochs)),
        # a one-shot budget with the greedy plan ranks on the unpruned inputs and allocates
        # the widths itself: no regression setting changes its result (with the entropic plan
        # the strengths rank and tau shapes the plan pass's inputs; an iterative schedule's
        # earlier steps are unbudgeted entropic passes: both keep them)
        "settings": (() if cfg.prune.has_budget and cfg.prune.plan == "greedy"
                     and set(sec.schedules) == {"one_shot"} else ("strengths", "widths")),
    }
    for name in ("eps_L2", "eps_E", "tau", "keep_ratio", "cost_exponent"):
        r = getattr(sec, name)
        if r is not None:
            changes[name] = r  # the config's own Range
    return replace(space, **changes)


def prepare(cfg: RunConfig, run_dir: Path, *, progress: bool = True) -> SearchSetup:
    loaders = load_data(cfg)
    val = val_loader(loaders)  # no val split: fail before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir, "config"):
        _atomic_write(run_dir / "config.yaml", cfg.to_yaml())
    stem = pretrained_checkpoint(cfg, run_dir, progress=progress)
    ckpt = load_checkpoint(stem)
    model = ckpt.model
    shape = tuple(loaders.input_shape)
    metrics = measure_model(model, shape, latency=cfg.search.cost == "latency",
                            **cfg.latency_kwargs())
    metrics["val_acc"] = hooked_accuracy(model, val, device=next(model.parameters()).device)
    key_consumers = consumer_map(model, shape)
    assert ckpt.spec is not None
    unprunable = [k for k in ckpt.spec.widths if k not in key_consumers]
    if cfg.prune.residual == "inner":
        unprunable += [k for k in ckpt.spec.widths if k.startswith("stage")]
        unprunable += search_spaces.generic.coupled_keys(ckpt.spec.family)
    return SearchSetup(config=cfg, run_dir=run_dir, pretrained=stem,
                       space=search_space(cfg, sorted(set(unprunable))),
                       key_consumers=key_consumers, base_metrics=metrics)


def uniform_spec_at(spec: ArchSpec, target: float, metric: str = "macs"
                    ) -> tuple[ArchSpec, float]:
    """The uniformly thinned spec of the same family whose MACs (or params) best match ``target``.

    ``metric`` is ``"macs"`` (per image) or ``"params"`` (all parameters); both grow with the
    width factor. For MACs of a source family (torchvision / timm / own model) the factor is
    bisected on the engine's width cost model and corrected by a few real builds (building
    such a model is surgery, so 30 builds would take minutes); otherwise it is bisected on
    real builds. Returns (spec, factor).
    """
    if metric not in ("macs", "params"):
        raise ValueError(f"metric must be 'macs' or 'params', got {metric!r}")
    from search_spaces.generic import width_units

    if metric == "macs" and width_units(spec.family):
        return _uniform_by_cost_model(spec, target)
    lo, hi = 0.0, 1.0
    best = (spec, float("inf"), 1.0)
    for _ in range(30):
        mid = (lo + hi) / 2
        cand = spec.scaled(mid)
        model = search_spaces.build(cand)
        cost = (count_macs(model, tuple(spec.input_shape)) if metric == "macs"
                else count_params(model))
        if abs(cost - target) < best[1]:
            best = (cand, abs(cost - target), mid)
        if cost > target:
            hi = mid
        else:
            lo = mid
    return best[0], best[2]


def _uniform_by_cost_model(spec: ArchSpec, target: float, *, rounds: int = 4,
                           tol: float = 0.02) -> tuple[ArchSpec, float]:
    """Uniform widths of a source family at ``target`` MACs: the factor bisected on the width
    cost model, the candidate built and counted, the goal corrected by the measured MACs, at
    most ``rounds`` builds (stops within ``tol``)."""
    from search_spaces.generic import width_units

    units = width_units(spec.family)
    shape = tuple(spec.input_shape)
    # the cost model and the factor are of the family's full widths (as spec.scaled is),
    # whatever widths the given spec has; its removed blocks stay removed
    full_model = search_spaces.build(spec.with_widths(search_spaces.get_family(spec.family)
                                                      .default_widths))
    cm = CostModel(full_model, shape, units, "macs")
    offset = float(count_macs(full_model, shape)) - cm.full()  # what the groups do not scale
    proxy = target - offset
    best: tuple[float, ArchSpec, float] | None = None
    for _ in range(rounds):
        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            if cm.cost([max(1, round(u.channels * mid)) for u in units]) > proxy:
                hi = mid
            else:
                lo = mid
        cand = spec.scaled(lo)
        reached = float(count_macs(search_spaces.build(cand), shape))
        if best is None or abs(reached - target) < best[0]:
            best = (abs(reached - target), cand, lo)
        if abs(reached - target) <= tol * target or reached <= 0:
            break
        proxy *= target / reached
    assert best is not None
    return best[1], best[2]


def uniform_baseline(cfg: RunConfig, setup: SearchSetup, target_macs: float, *,
                     progress: bool = True) -> dict[str, Any]:
    """Plain width scaling at equal MACs, trained from scratch with the pre-training recipe."""
    with run_lock(setup.run_dir, "baselines"):  # a second worker reuses the first's baseline
        return _uniform_baseline(cfg, setup, target_macs, progress=progress)


def _uniform_baseline(cfg: RunConfig, setup: SearchSetup, target_macs: float, *,
                      progress: bool = True) -> dict[str, Any]:
    cache = setup.run_dir / "baselines.json"
    done = json.loads(cache.read_text()) if cache.exists() else {}
    tag = f"uniform@{int(target_macs)}"
    if cfg.search.cost == "latency":  # a latency measured elsewhere is not this search's
        lat = cfg.latency_kwargs()
        tag += f"/latency@{lat['device']},b{lat['batch_size']},t{lat['threads']}"
    if tag in done:
        return done[tag]
    loaders = load_data(cfg)
    base = load_checkpoint(setup.pretrained).spec
    assert base is not None
    spec, factor = uniform_spec_at(base, target_macs)
    torch.manual_seed(cfg.train.seed + 7)
    model = search_spaces.build(spec)
    console.print(f"[bold]uniform baseline[/]: widths x{factor:.3f}, training from scratch")
    model, res = hooked_train(model, loaders, train_config(cfg.train, progress=progress,
                                                           seed=cfg.train.seed + 7))
    m = measure_model(model, tuple(loaders.input_shape), latency=cfg.search.cost == "latency",
                      **cfg.latency_kwargs())
    out = {"label": f"uniform x{factor:.2f} (scratch)", "accuracy": res.val_acc,
           cfg.search.cost: m["latency"]["median_ms"] if cfg.search.cost == "latency"
           else m[cfg.search.cost], "macs": m["macs"], "params": m["params"],
           "factor": factor, "widths": dict(spec.widths)}
    done[tag] = out
    _atomic_write(cache, json.dumps(done, indent=2))
    return out


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: readers see old or new."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


class _Progress:
    """Driver-side progress: trials done over the whole study, best accuracy, front size.

    On a terminal it is a live bar; in a log file (no TTY) it prints one plain line per
    finished trial, since a bar would appear only at the end. Counts are read back from the
    storage after each trial, so a resumed search or one of several workers on a study shows
    the study's totals, not only its own trials.
    """

    def __init__(self, total: int, objectives: list[Objective], tracker: Any, *,
                 storage: str | None = None, study: str | None = None) -> None:
        self.objectives = objectives
        self.tracker = tracker
        self.total = total
        self.storage, self.study = storage, study
        self._store: Any = None
        self.records: list[TrialRecord] = []
        self.t0 = time.perf_counter()
        self.tty = console.is_terminal
        self.progress = Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                 console=console, transient=False, disable=not self.tty)
        prior = self._study_records()
        done0 = self._counted(prior) if prior is not None else 0
        self.task = self.progress.add_task("trials", total=total, status="", completed=done0)
        if prior and not self.tty:
            console.print(f"search: resuming with {done0}/{total} trial(s) already counted")

    def _study_records(self) -> list[TrialRecord] | None:
        if self.storage is None or self.study is None:
            return None
        try:
            if self._store is None:  # one connection pool for the whole search
                from .study import open_storage

                self._store = open_storage(self.storage)
            return pareto_mod.load_records(self._store, self.study)
        except Exception:  # noqa: BLE001 - no study yet / storage busy: count our own trials
            return None

    @staticmethod
    def _counted(records: list[TrialRecord]) -> int:
        retried = {r.attrs.get("retry_of") for r in records if r.attrs.get("retry_of") is not None}
        return sum(r.state in ("COMPLETE", "PRUNED")
                   or (r.state == "FAIL" and r.number not in retried) for r in records)

    def __call__(self, record: TrialRecord) -> None:
        self.records.append(record)
        every = self._study_records() or self.records
        done = [r for r in every if r.state == "COMPLETE"]
        front = pareto_mod.front_records(done, self.objectives) if done else []
        best = max((r.values.get("accuracy", 0.0) for r in done), default=float("nan"))
        counted = self._counted(every)
        failed = sum(r.state == "FAIL" for r in every)
        rejected = sum(r.state == "PRUNED" for r in every)
        self.progress.update(self.task, completed=counted,
                             status=f"best acc {best:.4f}  front {len(front)}  "
                                    f"last: #{record.number} {record.state.lower()}")
        if not self.tty:
            vals = "  ".join(f"{k} {v:,.4g}" for k, v in record.values.items())
            why = record.attrs.get("error") or record.attrs.get("rejected") or ""
            what = vals if record.state == "COMPLETE" else str(why)[:160]
            mins, secs = divmod(int(time.perf_counter() - self.t0), 60)
            console.print(
                f"trial {record.number} {record.state.lower()}: {what} | study {counted}/"
                f"{self.total} done ({len(done)} complete, {failed} failed, {rejected} "
                f"rejected), best acc {best:.4f}, front {len(front)}, {mins}m{secs:02d}s",
                highlight=False, soft_wrap=True)
        if record.state == "COMPLETE" and self.tracker is not None:
            self.tracker.log_trial(record.number, record.params,
                                   TrialResult(dict(record.values), dict(record.attrs)),
                                   widths_plot_path=record.attrs.get("widths_plot"))


@contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Optuna's own INFO lines off while a search runs (each trial already gets one line of
    ours); ``ENTROPIC_NAS_OPTUNA_VERBOSE=1`` keeps them."""
    import optuna

    before = optuna.logging.get_verbosity()
    if os.environ.get("ENTROPIC_NAS_OPTUNA_VERBOSE", "0") in ("", "0"):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def run_search(cfg: RunConfig, run_dir: Path, *, backend: str | None = None,
               trials: int | None = None, storage: str | None = None, resume: bool = False,
               wandb_enabled: bool | None = None, ray_address: str | None = None,
               pick: str = "knee", progress: bool = True, source: str = "config",
               model: Any = None, train_fn: Any = None, evaluate_fn: Any = None
               ) -> dict[str, Any]:
    """Run a search end to end; returns the summary written to ``summary.json``.

    ``model`` replaces the config's model section: a factory (``fn(num_classes=...) ->
    nn.Module``; importable from its module for the Ray backend, whose workers rebuild it
    by name) or a trained ``nn.Module`` (its architecture is rebuilt by a factory that copies
    it, and its weights are the base model, so nothing is pre-trained).

    ``train_fn(model, epochs) -> model`` and ``evaluate_fn(model) -> {"accuracy": ...}``
    replace the built-in training loop and validation (:class:`nas.train.TrainHooks`): every
    pre-training, fine-tune, Scratch-E/B and uniform baseline goes through them, and every
    accuracy the search records comes from ``evaluate_fn``. They travel to Ray workers
    pickled by value, so they must not hold unpicklable state there.

    Raises:
        nas.validate.InputError: a bad argument (trials, storage, pick, output dir, an existing
            study without ``resume``, another backend on resume...), before any work.
        nas.storage.StorageError: the storage cannot be opened, before any work.
    """
    hooks = None
    if train_fn is not None or evaluate_fn is not None:
        if train_fn is not None and evaluate_fn is None:
            raise TypeError("run_search: train_fn needs evaluate_fn (a search selects on the "
                            "accuracy your evaluate_fn reports)")
        hooks = TrainHooks(train_fn=train_fn, evaluate_fn=evaluate_fn)
    with using_hooks(hooks), _optuna_quiet():
        return _run_search(cfg, run_dir, backend=backend, trials=trials, storage=storage,
                           resume=resume, wandb_enabled=wandb_enabled, ray_address=ray_address,
                           pick=pick, progress=progress, source=source, model=model,
                           hooks=hooks)


def _run_search(cfg: RunConfig, run_dir: Path, *, backend: str | None, trials: int | None,
                storage: str | None, resume: bool, wandb_enabled: bool | None,
                ray_address: str | None, pick: str, progress: bool, source: str, model: Any,
                hooks: TrainHooks | None) -> dict[str, Any]:
    from .tracking import Tracker, study_group, tracked_evaluate
    from .validate import InputError, check_config, check_storage_url, preflight_search

    t0 = time.perf_counter()
    # absolute before anything is sent to a worker: a Ray worker's working directory is not
    # the driver's, so a relative --out would name another place there
    run_dir = Path(run_dir).absolute()
    if model is not None:
        cfg = with_model(cfg, model, run_dir)
    cfg = absolute_paths(cfg)
    backend = backend or cfg.search.backend
    # the effective backend, for everything that depends on it (latency threads, config.yaml)
    cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update={"backend": backend})})
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int)
                               or trials < 1):
        raise InputError(f"--trials must be a whole number >= 1, got {trials!r}")
    n_trials = trials if trials is not None else cfg.search.trials
    study = cfg.search.study_name or cfg.name
    run_dir = Path(run_dir)
    from .storage import check_storage

    check_config(cfg, source=source, search=True)  # syntax first, naming the file / field
    if storage:
        check_storage_url(storage)  # ... or the flag
    # opened and checked before any pre-training: a bad URL is one message, exit 2
    storage_url = check_storage(storage or cfg.search.storage, run_dir)
    preflight_search(cfg, out=run_dir, storage_url=storage_url, study=study, backend=backend,
                     resume=resume, pick=pick, source=source, ray_address=ray_address)
    enabled = wandb_on(cfg, wandb_enabled)
    setup = prepare(cfg, run_dir, progress=progress)
    if hooks is not None:
        setup.extra["hooks"] = hooks
    objectives = objectives_for(cfg)
    sample = partial(sample_params, space=setup.space)
    tags = list(dict.fromkeys([cfg.model.family, cfg.data.name, backend, *cfg.wandb.tags]))
    tracker = Tracker(enabled=enabled, project=cfg.wandb.project, entity=cfg.wandb.entity,
                      group=study_group(storage_url, study), run_dir=run_dir, tags=tags)
    # each trial's W&B run is opened where the trial runs (this process or a Ray worker)
    evaluate_fn = partial(tracked_evaluate, evaluate=partial(evaluate_candidate, setup=setup),
                          tracker=tracker)
    prog = _Progress(n_trials, objectives, None, storage=storage_url, study=study)
    from .backends import SearchJob, make_backend

    job = SearchJob(study_name=study, storage=storage_url, objectives=objectives, sample=sample,
                    evaluate=evaluate_fn, n_trials=n_trials, run_dir=run_dir,
                    sampler=cfg.search.sampler, seed=cfg.search.seed, resume=resume,
                    on_trial_end=prog)
    settings: dict[str, Any] = {} if backend == "optuna" else {
        "ray_address": ray_address or cfg.search.ray_address,
        "resources_per_trial": {"cpu": cfg.search.cpus_per_trial,
                                "gpu": cfg.search.gpus_per_trial},
        "max_concurrent_trials": cfg.search.max_concurrent_trials}
    with prog.progress:
        make_backend(backend, **settings).run(job)
    with run_lock(run_dir, "finish"):  # workers sharing the run dir write results one at a time
        return _finish(cfg, setup, storage_url, study, backend, pick, objectives, tracker, t0,
                       progress=progress)


def _finish(cfg: RunConfig, setup: SearchSetup, storage_url: str, study: str, backend: str,
            pick: str, objectives: list[Objective], tracker: Any, t0: float, *,
            progress: bool) -> dict[str, Any]:
    run_dir = setup.run_dir
    records = pareto_mod.load_records(storage_url, study)
    done = [r for r in records if r.state == "COMPLETE"]
    if not done:
        raise RuntimeError(f"search {study!r}: no trial completed; see {run_dir}/trials/*/")
    base = setup.base_metrics
    baselines = [{"label": "unpruned (pre-trained)", "accuracy": base["val_acc"],
                  cfg.search.cost: base["latency"]["median_ms"] if cfg.search.cost == "latency"
                  else base[cfg.search.cost], "macs": base["macs"], "params": base["params"]}]
    from .export import pick_trial

    picked = pick_trial(done, objectives, pick)  # the uniform net matches the exported MACs
    if cfg.search.uniform_baseline:
        baselines.append(uniform_baseline(cfg, setup, picked.attrs["macs"], progress=progress))
    paths = pareto_mod.write_results(records, objectives, run_dir, baselines=baselines,
                                     title=f"{study}: accuracy vs {cfg.search.cost}")
    pareto_mod.print_front(records, objectives, console=console)
    judged = verdict(picked, baselines, n_val=len(val_loader(load_data(cfg)).dataset),  # type: ignore[arg-type]
                     pick=pick, base_macs=base["macs"])
    exported = export_winner(cfg, storage_url, study, pick, run_dir / "export", records=records,
                             baselines=baselines, verdict=judged)
    summary = {
        "study": study, "storage": redact(storage_url), "backend": backend,
        "trials": {s: sum(r.state == s for r in records)
                   for s in ("COMPLETE", "FAIL", "PRUNED", "RUNNING")},
        "front_size": len(pareto_mod.front_records(done, objectives)),
        "baselines": baselines, "export": exported,
        "seconds": time.perf_counter() - t0,
        "files": {k: str(v) for k, v in paths.items()},
        "verdict": judged,
    }
    _atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    tracker.log_summary(records, objectives, paths, baselines=baselines,
                        export_dir=Path(exported["dir"]), pick=pick)
    _print_summary(summary, base, exported)
    return summary


def wandb_on(cfg: RunConfig, flag: bool | None) -> bool:
    """Whether the search logs to W&B: the flag, else the config. Without the [wandb] extra,
    an explicit request (``--wandb``, ``wandb.enabled: true`` written in the config) stops
    here (exit 2); the default turns itself off with one line."""
    from .extras import hint, installed
    from .validate import InputError

    enabled = cfg.wandb.enabled if flag is None else flag
    if not enabled or installed("wandb"):
        return enabled
    if flag or "enabled" in cfg.wandb.model_fields_set:
        raise InputError(f"wandb.enabled: W&B logging needs wandb, which is not installed: "
                         f"{hint('wandb')}, or set wandb.enabled: false (--no-wandb)")
    from rich.markup import escape

    console.print(escape(f"W&B off: wandb is not installed ({hint('wandb')})"))
    return False


def verdict(rec: TrialRecord, baselines: list[dict[str, Any]], *, n_val: int, pick: str,
            base_macs: float) -> dict[str, Any]:
    """Pruned + fine-tuned vs Scratch-E vs the uniform net of equal MACs, at the exported pick.

    Differences of at most two validation images are called a tie (one image is
    ``100 / n_val`` points).
    """
    raw: dict[str, Any] = {"pruned + fine-tuned": rec.attrs.get("acc_finetuned"),
            "Scratch-E (same architecture)": rec.attrs.get("acc_scratch_e"),
            "Scratch-B (same architecture)": rec.attrs.get("acc_scratch_b")}
    uni = next((b for b in baselines if str(b.get("label", "")).startswith("uniform")), None)
    if uni is not None:
        raw[f"uniform x{uni['factor']:.2f} (scratch, {int(uni['macs']):,} MACs)"] = \
            uni["accuracy"]
    arms: dict[str, float] = {k: float(v) for k, v in raw.items() if isinstance(v, (int, float))}
    out: dict[str, Any] = {"trial": rec.number, "pick": pick, "macs": rec.attrs.get("macs"),
                           "macs_ratio": (rec.attrs.get("macs") or 0) / max(base_macs, 1),
                           "n_val": n_val, "accuracy": arms}
    if not arms:
        out["text"] = "no accuracies recorded for the exported trial"
        return out
    tie = 2.0 / max(n_val, 1)
    best = max(arms, key=lambda k: arms[k])
    others = [f"{100 * (arms[best] - v):+.1f} pt over {k}" for k, v in arms.items() if k != best]
    close = [k for k, v in arms.items() if k != best and arms[best] - v <= tie]
    text = f"{best} is best ({arms[best]:.4f}; " + ", ".join(others) + ")"
    if close:
        text += f"; within 2 validation images of it: {', '.join(close)} (a tie)"
    ft, se = arms.get("pruned + fine-tuned"), arms.get("Scratch-E (same architecture)")
    if ft is not None and se is not None:
        text += (". The pruned weights add to the found architecture" if ft - se > tie else
                 ". The found architecture alone explains the result (it trains as well from "
                 "scratch; cf. Liu et al., ICLR 2019)")
    uni_key = next((k for k in arms if k.startswith("uniform")), None)
    if uni_key is not None and se is not None:
        # architecture against architecture: both trained from scratch, so this clause is
        # about the found widths, whatever the pruned + fine-tuned arm scored
        text += ("; trained from scratch alike, the searched widths beat uniform thinning "
                 "at equal MACs" if se - arms[uni_key] > tie else
                 "; trained from scratch alike, uniform thinning at equal MACs is as good as "
                 "the searched widths" if abs(se - arms[uni_key]) <= tie else
                 "; trained from scratch alike, uniform thinning at equal MACs beats the "
                 "searched widths")
    out["text"] = text + "."
    return out


def export_winner(cfg: RunConfig, storage_url: str, study: str, pick: str, out_dir: Path, *,
                  records: list[TrialRecord] | None = None,
                  baselines: list[dict[str, Any]] | None = None,
                  verdict: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export the picked trial and compute its test accuracy (the only use of the test set);
    the model card shows ``baselines`` and the ``verdict`` beside it."""
    from .export import export_trial

    records = records if records is not None else pareto_mod.load_records(storage_url, study)
    objectives = pareto_mod.load_objectives(storage_url, study)
    rec = _pick(records, objectives, pick)
    loaders = load_data(cfg)
    ckpt = load_checkpoint(rec.attrs["checkpoint"])
    test_acc = evaluate(ckpt.model, loaders.test, device="cpu")[1]
    rec.attrs["test_acc_finetuned"] = test_acc

    def load_model(r: TrialRecord) -> tuple[torch.nn.Module, ArchSpec]:
        c = load_checkpoint(r.attrs["checkpoint"])
        assert c.spec is not None
        return c.model, c.spec

    from .export import preprocessing_for

    export_trial(rec, out_dir, load_model=load_model, objectives=objectives, study_name=study,
                 preprocessing=preprocessing_for(cfg.data), baselines=baselines or (),
                 verdict=verdict)
    return {"dir": str(out_dir), "trial": rec.number, "pick": pick, "test_acc": test_acc,
            "values": rec.values, "widths": rec.attrs.get("widths")}


def _pick(records: list[TrialRecord], objectives: list[Objective], pick: str) -> TrialRecord:
    from .export import pick_trial
    from .validate import InputError

    try:
        return pick_trial(records, objectives, pick)
    except ValueError as exc:  # no such metric, nothing within the budget: the flag is wrong
        raise InputError(f"--pick {pick!r}: {exc} (the study is kept; export another pick "
                         "with `entropic-nas export`)") from None


def export_from_storage(storage: str, study: str, pick: str, out_dir: Path, *,
                        data_root: str | None = None) -> dict[str, Any]:
    records = pareto_mod.load_records(storage, study)
    done = [r for r in records if r.state == "COMPLETE"]
    if not done:
        from .validate import InputError

        raise InputError(f"--study {study!r} in {storage}: no completed trial to export")
    picked = _pick(records, pareto_mod.load_objectives(storage, study), pick)  # before any work
    cfg_path = Path(done[0].attrs["trial_dir"]).parents[1] / "config.yaml"
    from .config import load_config

    overrides = {"data.root": data_root} if data_root else None
    cfg = load_config(cfg_path, overrides)
    baselines, judged = _search_baselines(cfg_path.parent, picked.number)
    out = export_winner(cfg, storage, study, pick, out_dir, records=records,
                        baselines=baselines, verdict=judged)
    console.print(f"[bold]exported[/] trial #{out['trial']} ({pick}) -> {out_dir}: "
                  f"test acc {out['test_acc']:.4f}")
    return out


def _search_baselines(run_dir: Path,
                      trial: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The baselines the search recorded in ``summary.json`` and its verdict when it judged
    this very trial (a later ``export --pick`` of another trial gets the baselines only)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return [], None
    judged = summary.get("verdict")
    if not isinstance(judged, dict) or judged.get("trial") != trial:
        judged = None
    return [b for b in summary.get("baselines") or [] if isinstance(b, dict)], judged


def replot(storage: str, study: str, out_dir: Path | None) -> dict[str, Path]:
    records = pareto_mod.load_records(storage, study)
    objectives = pareto_mod.load_objectives(storage, study)
    done = [r for r in records if r.state == "COMPLETE"]
    if out_dir is None:
        out_dir = Path(done[0].attrs["trial_dir"]).parents[1] if done else Path(".")
    baselines: list[dict[str, Any]] = []
    bjson = out_dir / "pareto.json"
    if bjson.exists():
        baselines = json.loads(bjson.read_text()).get("baselines", [])
    paths = pareto_mod.write_results(records, objectives, out_dir, baselines=baselines)
    pareto_mod.print_front(records, objectives, console=console)
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return paths


def _print_summary(summary: dict[str, Any], base: dict[str, Any], exported: dict[str, Any]
                   ) -> None:
    t = summary["trials"]
    console.print(
        f"[bold green]search done[/] in {summary['seconds']:.0f} s: {t['COMPLETE']} complete, "
        f"{t['FAIL']} failed, {t['PRUNED']} rejected; front of {summary['front_size']}.\n"
        f"unpruned: val acc {base['val_acc']:.4f} at {base['macs']:,} MACs; exported trial "
        f"#{exported['trial']} ({exported['pick']}): val acc {exported['values']['accuracy']:.4f}, "
        f"test acc {exported['test_acc']:.4f} -> {exported['dir']}"
    )
    v = summary.get("verdict") or {}
    if v.get("accuracy"):
        console.print(
            f"[bold]verdict[/] at the exported trial #{v['trial']} ({v['pick']}, "
            f"{100 * v['macs_ratio']:.0f} % of the unpruned MACs), validation accuracy on "
            f"{v['n_val']:,} images (1 image = {100 / max(v['n_val'], 1):.2f} pt): "
            + "; ".join(f"{k} {a:.4f}" for k, a in v["accuracy"].items()) + ".\n"
            + v["text"], highlight=False)
