"""One candidate of a search: the architecture-discovery test.

pretrained model -> sparsify (the trial's eps per group, schedule) -> params / MACs / MiB /
latency -> validation accuracy right after pruning -> fine-tune -> validation accuracy
(pruned + fine-tuned) -> rebuild the found ArchSpec with fresh weights -> train from scratch
(Scratch-E: the pre-training epochs; Scratch-B: epochs scaled by the MACs ratio) ->
validation accuracy (scratch) -> :class:`TrialResult`.

Test accuracy is never computed here: searches select on validation only; the exported
winners get their test accuracy in ``nas.search``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

import pruning
import search_spaces
from pruning.measure import measure
from pruning.regression import check_setting
from search_spaces import ArchSpec
from search_spaces.data import DataSpec, Loaders, get_loaders
from search_spaces.space import SearchSpace, TrialParams, decode_params

from .checkpoint import load_checkpoint, save_checkpoint
from .config import ConfigError, PruneSection, RunConfig, TrainSection, import_user_modules
from .search_types import RejectTrial, TrialContext, TrialResult
from .tracking import epoch_logger
from .train import TrainConfig, has_evaluate_hook, hooked_accuracy, hooked_train, using_hooks


# -- config -> typed arguments ---------------------------------------------------------------
def data_spec(cfg: RunConfig) -> DataSpec:
    return DataSpec(**cfg.data.model_dump())


def train_config(section: TrainSection, *, progress: bool = True, **changes: Any) -> TrainConfig:
    """The section's TrainConfig; with ``recipe:`` only the fields it sets override the recipe."""
    if section.recipe is not None:
        values = section.model_dump(exclude_unset=True, exclude={"recipe"})
    else:
        values = section.model_dump(exclude={"recipe"})
    if "step_milestones" in values:
        values["step_milestones"] = tuple(values["step_milestones"])
    values.update(changes)
    if section.recipe is not None:
        return TrainConfig.from_recipe(section.recipe, **values, progress=progress)
    return TrainConfig(**values, progress=progress)


def regression_config(prune: PruneSection) -> pruning.RegressionConfig:
    """The run's fixed layer setting (``prune.*``)."""
    return prune.setting()


def sparsify_config(prune: PruneSection, *, progress: bool = True, **changes: Any
                    ) -> pruning.SparsifyConfig:
    values: dict[str, Any] = dict(
        regression=regression_config(prune),
        calib_positions_per_image=prune.calib_positions_per_image,
        calib_rows_per_feature=prune.calib_rows_per_feature,
        refit_ridge_from_heldout=prune.refit_ridge_from_heldout,
        target_source=prune.target_source,
        residual=prune.residual,
        recalibrate_bn=prune.recalibrate_bn,
        cache_activations=prune.cache_activations,
        cache_budget_bytes=(None if prune.cache_budget_mb is None
                            else prune.cache_budget_mb << 20),
        moments_dtype=prune.moments_dtype,
        cost_exponent=prune.cost_exponent,
        cost_currency=prune.cost_currency,
        progress=progress,
    )
    values.update(changes)
    return pruning.SparsifyConfig(**values)


def trial_budget(cfg: RunConfig, base: dict[str, Any], *,
                 search: bool = True) -> pruning.Budget | None:
    """The budget of a trial's last pruning step (None: no ``prune.target_*``).

    Target-driven search: with a ``prune.target_*`` every trial prunes to the budget and
    the search explores how it is spent (eps only ranks channels; the groups and schedule
    decide which layers may give). A ratio is turned into an absolute amount of the
    pre-trained model (``base``, keyed by the currency's name), so that an iterative
    schedule's last step, which starts from an already pruned model, still aims at the
    original budget (at least 2: an amount of 1 would read as the whole model). ``search``:
    as :meth:`RunConfig.latency_kwargs` (False for ``entropic-nas prune``).
    """
    budget = cfg.budget(search=search)
    if budget is None or not budget.currency.ratio_allowed or budget.value > 1.0:
        return budget
    amount = max(2.0, float(round(budget.value * float(base[budget.currency.name]))))
    return pruning.Budget(budget.currency, amount, budget.field_name)


@lru_cache(maxsize=4)
def _loaders_cached(spec_json: str) -> Loaders:
    return get_loaders(DataSpec(**json.loads(spec_json)))


def calib_loader(cfg: RunConfig, loaders: Loaders) -> Any:
    """The pass's calibration images as ``prune.*`` asks (count, batch size, mirrored and
    shifted views)."""
    return loaders.calib(min(cfg.prune.calib_images, len(loaders.train.dataset)),  # type: ignore[arg-type]
                         cfg.prune.calib_batch_size, flip=cfg.prune.calib_flip,
                         shift=cfg.prune.calib_shift)


def load_data(cfg: RunConfig) -> Loaders:
    """The run's loaders (cached per process: trials in one worker share them)."""
    return _loaders_cached(json.dumps(cfg.data.model_dump(mode="json"), sort_keys=True))


def base_spec(cfg: RunConfig, loaders: Loaders) -> ArchSpec:
    if cfg.model.arch:
        return ArchSpec.load(cfg.model.arch)
    c, h, w = loaders.input_shape
    return search_spaces.default_spec(
        cfg.model.family,
        num_classes=cfg.model.num_classes or loaders.num_classes,
        input_shape=(c, h, w),
    )


def val_loader(loaders: Loaders) -> DataLoader:
    """The validation loader a search selects on; there is no fallback to test."""
    if loaders.val is None:
        raise ConfigError("a search selects on validation accuracy: data.val_fraction must be "
                          "> 0 (the test split is used for reporting only)")
    return loaders.val


# -- what a search shares with its trials ------------------------------------------------------
@dataclass
class SearchSetup:
    """Everything a trial needs, picklable (sent to Ray workers)."""

    config: RunConfig
    run_dir: Path
    pretrained: Path
    space: SearchSpace
    key_consumers: dict[str, list[str]]
    base_metrics: dict[str, Any]
    progress: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def consumer_map(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, list[str]]:
    """Width key (producer module) -> the consumer layers whose inputs it feeds."""
    example = torch.zeros(1, *input_shape)
    dg = pruning.surgery.build_graph(model, example)
    out: dict[str, list[str]] = {}
    for c in pruning.surgery.discover_consumers(model, dg, example):
        for p in c.producers:
            out.setdefault(p, []).append(c.name)
    return out


def _cost(metrics: dict[str, Any], cost: str) -> float:
    if cost == "latency":
        return float(metrics["latency"]["median_ms"])
    return float(metrics[cost])


def measure_model(model: nn.Module, input_shape: tuple[int, ...], *, latency: bool,
                  **latency_kwargs: Any) -> dict:
    """Params, MACs, ... and, with ``latency``, latency at ``latency_kwargs`` (device,
    batch_size, threads: ``RunConfig.latency_kwargs()`` in a search)."""
    m = measure(model, tuple(input_shape), latency=latency, **latency_kwargs)
    return m.to_dict()


def schedule_steps(tp: TrialParams, setup: SearchSetup) -> list[list[str]]:
    """The consumer layers to prune, as a list of steps (one step for one-shot)."""
    groups = [g for g in setup.space.groups if tp.groups.get(g.name) and tp.groups[g.name].prune]
    if tp.order == "back_to_front":
        groups = groups[::-1]
    elif tp.order == "random":
        random.Random(tp.permutation_seed).shuffle(groups)
    steps: list[list[str]] = []
    for g in groups:
        layers: list[str] = []
        for key in g.layers:  # (layers inside the residual blocks the trial removed are gone)
            layers += [c for c in setup.key_consumers.get(key, [])
                       if c not in layers and not pruning.inside_blocks(c, tp.dropped)]
        if layers:
            steps.append(layers)
    if tp.schedule == "one_shot":
        flat: list[str] = []
        for s in steps:
            flat += [c for c in s if c not in flat]
        return [flat] if flat else []
    return steps


def group_setting(base: pruning.RegressionConfig, group: str, sampled: dict[str, float]
                  ) -> pruning.RegressionConfig:
    """The run's setting ``base`` with a group's sampled values (where the searched and the
    fixed paths meet); a bad value names its ``search.space`` field and trial param."""
    for name, value in sampled.items():
        try:
            check_setting(name, value)
        except ValueError as exc:
            raise ConfigError(f"search.space.{name} (trial param {group}.{name}): {exc}") from None
    changes: dict[str, Any] = dict(sampled)
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as exc:
        raise ConfigError(f"search.space of group {group!r}: {exc}") from None


def layer_settings(tp: TrialParams, setup: SearchSetup) -> dict[str, pruning.RegressionConfig]:
    """Consumer -> its layer setting in this trial (pruned groups only; the others are not
    in the trial's schedule)."""
    base = regression_config(setup.config.prune)
    out: dict[str, pruning.RegressionConfig] = {}
    for group in setup.space.groups:
        gp = tp.groups.get(group.name)
        if gp is None or not gp.prune:
            continue
        setting = group_setting(base, group.name, gp.setting)
        for key in group.layers:
            for consumer in setup.key_consumers.get(key, []):
                out[consumer] = setting
    return out


def scratch_epochs(variant: str, base_epochs: int, macs_ratio: float, cap: int | None) -> int:
    """Scratch-E: the original epochs; Scratch-B: epochs scaled by the MACs ratio (Liu et al.)."""
    if variant == "E":
        return base_epochs
    epochs = math.ceil(base_epochs / max(macs_ratio, 1e-6))
    return min(epochs, cap) if cap else epochs


def train_from_scratch(spec: ArchSpec, cfg: RunConfig, loaders: Loaders, *, epochs: int,
                       seed: int, progress: bool, on_epoch_end: Any = None,
                       ) -> tuple[nn.Module, dict[str, Any]]:
    torch.manual_seed(seed)
    model = search_spaces.build(spec)
    model, res = hooked_train(model, loaders, train_config(cfg.train, progress=progress,
                                                           epochs=epochs, seed=seed),
                              on_epoch_end=on_epoch_end)
    return model, {"val_acc": res.val_acc, "epochs": epochs,
                   "seconds": res.seconds_per_epoch * res.epochs_run}


def evaluate_candidate(params: dict[str, Any], ctx: TrialContext, *, setup: SearchSetup
                       ) -> TrialResult:
    """Run one trial end to end; see the module docstring. A user's own training loop
    (``setup.extra["hooks"]``, :class:`nas.train.TrainHooks`) travels with the setup, so a
    Ray worker uses it too."""
    with using_hooks(setup.extra.get("hooks")):
        return _evaluate_candidate(params, ctx, setup=setup)


_CALIB_CACHE: dict[tuple[Any, ...], pruning.CalibCache] = {}
_CALIB_LOCK = threading.Lock()


def calib_cache(key: tuple[Any, ...]) -> pruning.CalibCache | None:
    """This process's calibration cache for ``key`` (the pre-trained model, its dropped
    blocks, the calibration settings): kept across the trials a worker runs (the Optuna
    backend runs them all in one process), so the calibration set is read and the unpruned
    network run over it once, not once per trial. One cache at a time (its tensors may sit on
    the GPU through the trial's fine-tune); None while another thread of this process uses
    it (``n_jobs`` > 1: that trial runs without). The cache also checks itself against the
    model and data it is used with."""
    if not _CALIB_LOCK.acquire(blocking=False):
        return None
    if key not in _CALIB_CACHE:
        _CALIB_CACHE.clear()
        _CALIB_CACHE[key] = pruning.CalibCache()
    return _CALIB_CACHE[key]


def release_calib_cache() -> None:
    """Hand back the cache :func:`calib_cache` lent (called by the thread that got it)."""
    _CALIB_LOCK.release()


def _evaluate_candidate(params: dict[str, Any], ctx: TrialContext, *, setup: SearchSetup
                        ) -> TrialResult:
    cfg = setup.config
    t0 = time.perf_counter()
    import_user_modules(cfg.model.imports)  # a Ray worker has not validated the config
    if ctx.backend == "ray":
        # Several trials share the node: oversubscribed intra-op threads slow small models
        # down by up to 10x, so each trial uses the CPUs Tune reserved for it.
        torch.set_num_threads(max(1, int(cfg.search.cpus_per_trial)))
    tp = decode_params(params, setup.space)
    loaders = load_data(cfg)
    ckpt = load_checkpoint(setup.pretrained)
    model = ckpt.model
    if tp.dropped:  # depth first: the pass then thins what is left (a copy: the unpruned
        model = pruning.drop_blocks(model, tp.dropped)  # net stays the recovery's teacher)
    input_shape = tuple(loaders.input_shape)
    calib = calib_loader(cfg, loaders)
    settings = layer_settings(tp, setup)
    steps = schedule_steps(tp, setup)
    reports: list[dict[str, Any]] = []
    budget_report: dict[str, Any] | None = None
    ft_epochs_between = max(1, tp.finetune_epochs // max(len(steps), 1))
    exponent = {} if tp.cost_exponent is None else {"cost_exponent": tp.cost_exponent}
    prune_s, cache_reused = 0.0, False
    cache_key = (str(setup.pretrained), tuple(tp.dropped), cfg.prune.calib_images,
                 cfg.prune.calib_batch_size, cfg.prune.calib_flip, cfg.prune.calib_shift,
                 cfg.data.model_dump_json())
    for i, layers in enumerate(steps):
        # every trial samples the same calibration positions (common random numbers: trials
        # differ by their knobs only), so the first step reuses this worker's calibration
        # batches and reference outputs (pruning.CalibCache, checked against the model)
        scfg = sparsify_config(cfg.prune, progress=setup.progress, layers=layers,
                               layer_overrides={k: settings[k] for k in layers if k in settings},
                               seed=cfg.search.seed, **exponent)
        cache = calib_cache(cache_key) if i == 0 else None
        t_prune = time.perf_counter()
        try:
            budget = trial_budget(cfg, setup.base_metrics) if i == len(steps) - 1 else None
            choice = cfg.prune.selection_kwargs() if budget is not None else {}
            result = pruning.sparsify(model, calib, scfg, cache=cache, budget=budget, **choice)
        except pruning.BudgetError as exc:  # the layers this trial may prune cannot reach it
            raise RejectTrial(str(exc)) from None
        finally:
            if cache is not None:
                release_calib_cache()
        prune_s += time.perf_counter() - t_prune
        cache_reused |= bool(result.engine.get("calib_cache_reused"))
        if result.budget is not None:
            budget_report = result.budget
        model = result.model
        reports += [r.to_dict() for r in result.report]
        if tp.schedule == "iterative" and i < len(steps) - 1:
            model, _ = hooked_train(model, loaders, train_config(
                cfg.finetune, progress=setup.progress, epochs=ft_epochs_between))
    spec = search_spaces.spec_from_model(model)
    metrics = measure_model(model, input_shape, latency=cfg.search.times_latency,
                            **cfg.latency_kwargs())
    base = setup.base_metrics
    macs_ratio = metrics["macs"] / base["macs"]
    attrs: dict[str, Any] = {
        "arch_spec": spec.to_dict(),
        "widths": dict(spec.widths),
        "params": metrics["params"],
        "macs": metrics["macs"],
        "flops": metrics["flops"],
        "fp32_mib": metrics["fp32_mib"],
        "macs_ratio": macs_ratio,
        "param_sparsity": 1 - metrics["prunable_params"] / base["prunable_params"],
        "trial_dir": str(ctx.trial_dir),
        "prune_seconds": prune_s,
        "calib_cache_reused": cache_reused,
        "cost_exponent": cfg.prune.cost_exponent if tp.cost_exponent is None else tp.cost_exponent,
    }
    if metrics.get("latency") is not None:  # the conditions travel with the number
        attrs["latency"] = {k: metrics["latency"][k] for k in
                            ("median_ms", "iqr_ms", "batch_size", "device", "threads")}
        attrs["latency_ms"] = float(metrics["latency"]["median_ms"])  # for --pick rules
    if budget_report is not None:
        attrs["budget"] = {k: budget_report[k] for k in
                           ("metric", "target", "target_ratio", "reached", "reached_ratio",
                            "within_tolerance", "plan_reused") if k in budget_report}
    if cfg.search.max_macs is not None and metrics["macs"] > cfg.search.max_macs:
        raise RejectTrial(f"macs {metrics['macs']:.4g} > search.max_macs {cfg.search.max_macs:.4g}")
    if cfg.search.max_params is not None and metrics["params"] > cfg.search.max_params:
        raise RejectTrial(f"params {metrics['params']:.4g} > search.max_params "
                          f"{cfg.search.max_params:.4g}")
    if cfg.search.max_latency_ms is not None:
        lat = float(metrics["latency"]["median_ms"])
        if lat > cfg.search.max_latency_ms:
            c = metrics["latency"]
            raise RejectTrial(f"latency {lat:.4g} ms > search.max_latency_ms "
                              f"{cfg.search.max_latency_ms:.4g} (batch {c['batch_size']} on "
                              f"{c['device']}, {c['threads']} threads)")
    device = next(model.parameters()).device
    attrs["acc_pruned"] = hooked_accuracy(model, val_loader(loaders), device=device)
    if cfg.recovery.mode != "none":  # the post-training step (guarded on val), before any FT
        from .recovery import RecoveryConfig, recover

        plain = not has_evaluate_hook()  # then acc_pruned is the guard's plain val accuracy
        rec = recover(model, ckpt.model, loaders.train,
                      RecoveryConfig(**cfg.recovery.model_dump()), val_loader=val_loader(loaders),
                      device=device, val_acc_before=attrs["acc_pruned"] if plain else None)
        attrs["recovery"] = {k: rec[k] for k in ("mode", "steps", "lr", "kept", "seconds")}
        # through the evaluate hook like every recorded accuracy (the guard's own use plain);
        # without a hook the guard's two evaluations are those accuracies
        guarded = rec["val_acc_before"] is not None and rec["val_acc_after"] is not None
        if plain and guarded:
            attrs["acc_recovered"] = (rec["val_acc_after"] if rec["kept"] == "recovered"
                                      else rec["val_acc_before"])
        else:
            attrs["acc_recovered"] = hooked_accuracy(model, val_loader(loaders), device=device)
    ft_epochs = tp.finetune_epochs if tp.schedule == "one_shot" else ft_epochs_between
    model, ft = hooked_train(model, loaders, train_config(cfg.finetune, progress=setup.progress,
                                                          epochs=ft_epochs),
                             on_epoch_end=epoch_logger("finetune"))  # live W&B curves (None: off)
    attrs["acc_finetuned"] = ft.val_acc
    ctx.trial_dir.mkdir(parents=True, exist_ok=True)
    ck = save_checkpoint(ctx.trial_dir / "finetuned", model, spec,
                         config=cfg.model_dump(mode="json"),
                         metrics={"val_acc": ft.val_acc, **metrics})
    attrs["checkpoint"] = str(ck)
    if cfg.scratch.enabled:
        for variant in cfg.scratch.variants:
            epochs = scratch_epochs(variant, cfg.train.epochs, macs_ratio, cfg.scratch.max_epochs)
            _, res = train_from_scratch(spec, cfg, loaders, epochs=epochs,
                                        seed=cfg.train.seed + 1000 + ctx.number,
                                        progress=setup.progress,
                                        on_epoch_end=epoch_logger(f"scratch_{variant.lower()}"))
            attrs[f"acc_scratch_{variant.lower()}"] = res["val_acc"]
            attrs[f"scratch_{variant.lower()}_epochs"] = epochs
    attrs["seconds"] = time.perf_counter() - t0
    (ctx.trial_dir / "report.json").write_text(json.dumps(
        {"params": params, "attrs": attrs, "layers": reports}, indent=2, default=str))
    from .plots import plot_widths

    plot_widths(spec, ctx.trial_dir / "widths.png")
    attrs["widths_plot"] = str(ctx.trial_dir / "widths.png")
    acc_key = {"finetuned": "acc_finetuned", "pruned": "acc_pruned", "recovered": "acc_recovered",
               "scratch_e": "acc_scratch_e", "scratch_b": "acc_scratch_b"}[cfg.search.accuracy]
    if acc_key not in attrs:
        raise ValueError(f"search.accuracy={cfg.search.accuracy!r} needs scratch variant "
                         f"{acc_key[-1].upper()} in scratch.variants")
    cost = _cost(metrics, cfg.search.cost)
    return TrialResult(objectives={"accuracy": float(attrs[acc_key]), cfg.search.cost: cost},
                       attrs=attrs)


