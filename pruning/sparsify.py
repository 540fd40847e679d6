"""Layer-by-layer entropic sparsification of a whole network (spec section 4).

For every consumer layer (a Conv2d/Linear fed by another Conv2d/Linear) in turn:

1. run calibration data through the *original* network to get the layer's own pre-BN,
   pre-activation output Y, and through the pruned-so-far network to get its input X, at
   the same sampled positions (error compensation, as in ThiNet / He et al. 2017);
2. stream the second moments of (X, Y) (float64 accumulation; float32 batch products by
   default), keeping a held-out share of the samples;
3. solve the sparse entropic regression (:func:`pruning.regression.entropic_regression`);
4. physically remove the dropped channels (producer filters, their BatchNorm entries, the
   consumer's inputs) and write the refitted weights and intercept into the consumer.

Afterwards BatchNorm statistics are re-estimated on the calibration data. The caller's model
is never modified: the result holds a pruned deep copy.

Example:
    >>> result = sparsify(model, calib_loader, SparsifyConfig(
    ...     regression=RegressionConfig(eps_L2=0.03), layer_overrides={"fc1": {"eps_L2": 0.1}}))
    >>> result.model, [r.kept for r in result.report]


The pass's parts live in their own modules: the settings and the report
(:mod:`pruning.config`), data collection (:mod:`pruning.capture`), channel selection
(:mod:`pruning.criteria`), coupled moments (:mod:`pruning.stacking`), channel removal
(:mod:`pruning.surgery`) and BatchNorm recalibration (:mod:`pruning.bn`); this module holds
the pass itself: :func:`sparsify` (entropic selection), :func:`prune_to_widths` (given
channels) and :func:`prune_with` (any :class:`pruning.criteria.Criterion`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pruning.activations import changed_modules, module_state
from pruning.bn import recalibrate_batchnorm
from pruning.capture import Collector, first_batch, model_device, restore_modes, snapshot_modes
from pruning.config import (
    GAP_FLAG_THRESHOLD,
    LayerReport,
    SparsifyConfig,
    SparsifyResult,
    layer_setting,
)
from pruning.criteria import Criterion, Entropic, GivenChannels, Selection, Unit
from pruning.inputs import check_input_fits, reiterable
from pruning.measure import count_macs, count_params, prunable_params
from pruning.moments import Moments
from pruning.phases import timed
from pruning.regression import RegressionConfig, reconstruction_error
from pruning.surgery import (
    Consumer,
    build_graph,
    discover_consumers,
    remove_input_channels,
    set_consumer_parameters,
)

__all__ = ["prune_to_widths", "prune_with", "sparsify"]

log = logging.getLogger(__name__)


@timed("measure")
def _counts(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    return {"params": int(count_params(model)),
            "prunable_params": int(prunable_params(model)),
            "macs": int(count_macs(model, input_shape))}


class _Engine:
    """State shared by the per-layer steps: both networks, the graph, index bookkeeping."""

    @timed("setup")
    def __init__(
        self,
        model: nn.Module,
        loader: Iterable | None,
        config: SparsifyConfig,
        example: Tensor,
    ) -> None:
        self.config = config
        want = model_device(model) if config.device == "auto" else torch.device(config.device)
        self.device = want
        self.caller_modes = snapshot_modes(model)
        # The original network gives Y; the caller's model is used when it is already on the
        # right device (hooks are removed and modes restored, nothing else is touched).
        self.reference = model if model_device(model) == want else copy.deepcopy(model).to(want)
        self.pruned = copy.deepcopy(model).to(want)
        self.reference.eval()
        self.pruned.eval()
        self.example = example.to(want)
        try:
            self.dg = build_graph(self.pruned, self.example)
            self.consumers = discover_consumers(self.pruned, self.dg, self.example)
        except BaseException:
            self.close()
            raise
        self.by_name = {c.name: c for c in self.consumers}
        # Current output channel j of a pruned Conv2d/Linear is original channel out_index[j].
        self.out_index: dict[str, Tensor] = {}
        for name, mod in self.pruned.named_modules():
            if isinstance(mod, nn.Conv2d):
                self.out_index[name] = torch.arange(mod.out_channels)
            elif isinstance(mod, nn.Linear):
                self.out_index[name] = torch.arange(mod.out_features)
        self.changed = False
        self.strength: dict[str, float] = {}
        if config.cost_exponent != 0:
            self.strength = self._strengths()
        # The data side: the consumers to regress (set by _run before the first unit) and
        # the activation caches, built on the first collect (pruning.activations).
        self.data = Collector(config, loader, want, self.reference, self.pruned,
                              self.consumers, self.out_index)

    def close(self) -> None:
        if hasattr(self, "data"):
            self.data.close()
        restore_modes(self.reference, self.caller_modes)
        restore_modes(self.pruned, self.caller_modes)

    # -- units ------------------------------------------------------------------------

    def unit_of(self, consumer: Consumer) -> list[Consumer]:
        """The consumers processed together with ``consumer`` (itself unless coupled)."""
        if self.config.residual == "coupled" and consumer.coupling == "residual":
            members = [self.by_name[n] for n in consumer.consumers if n in self.by_name]
            if all(m.skip_reason in (None, "residual-coupled input channels") for m in members):
                return sorted(members, key=lambda c: c.order)
        return [consumer]

    def skip_reason(self, unit: list[Consumer]) -> str | None:
        head = unit[0]
        if len(unit) == 1 and head.skip_reason is not None:
            return head.skip_reason
        d = head.num_channels * sum(c.regression_group_size for c in unit)
        if d > self.config.max_features:
            return f"regression too large (d={d} > max_features={self.config.max_features})"
        return None

    # -- selection ------------------------------------------------------------------

    def _strengths(self) -> dict[str, float]:
        from pruning.cost import channel_costs, strength_factors

        units: list[list[Consumer]] = []
        seen: set[str] = set()
        for c in sorted(self.consumers, key=lambda c: c.order):
            if c.name in seen:
                continue
            unit = self.unit_of(c)
            seen.update(m.name for m in unit)
            if self.skip_reason(unit) is None:
                units.append(unit)
        costs = channel_costs(self.pruned, tuple(self.example.shape[1:]), units,
                              currency=self.config.cost_currency)
        factors = strength_factors(costs, self.config.cost_exponent)
        return {m.name: factors[u[0].name] for u in units for m in u}

    def regression_config(self, unit: list[Consumer]) -> RegressionConfig:
        """The unit's settings: overrides merged, resolved for its C, strength applied."""
        setting = layer_setting(self.config, [c.name for c in unit])
        return setting.for_layer(unit[0].num_channels,
                                 eps_L2_factor=self.strength.get(unit[0].name, 1.0))

    def unit_input(self, unit: list[Consumer], moments: list[Moments] | None) -> Unit:
        """What a criterion sees of ``unit`` (:class:`pruning.criteria.Unit`)."""
        return Unit(consumers=unit, setting=self.regression_config(unit), moments=moments,
                    reference=self.reference, channels=self.out_index[unit[0].producers[0]])

    # -- surgery ----------------------------------------------------------------------

    def apply(self, unit: list[Consumer], sel: Selection) -> list[str]:
        """Remove the dropped channels and write the refitted parameters."""
        head = unit[0]
        keep = sel.keep.detach().to("cpu", torch.long)
        dropped = len(keep) < head.num_channels
        if not dropped and not self.changed:
            # Nothing removed and the network upstream is untouched: the layer's own weights
            # are exact already, a refit could only add rounding.
            return ["unchanged"] * len(unit)
        before = module_state(self.pruned) if self.data.act_cache is not None else None
        remove_input_channels(self.dg, head, keep)
        for p in head.producers:
            self.out_index[p] = self.out_index[p][keep]
        self.changed = True
        where = []
        for j, c in enumerate(unit):
            if sel.params is None:
                where.append("kept")
                continue
            weight, bias = sel.params[j]
            where.append(set_consumer_parameters(self.pruned, c, weight, bias))
        if self.data.act_cache is not None and before is not None:
            refitted = [c.name for c in unit] + [c.bn_after for c in unit if c.bn_after]
            self.data.act_cache.after_surgery(
                [c.name for c in unit], changed_modules(before, module_state(self.pruned)),
                refitted, keep, {c.name: c.features_per_channel for c in unit})
        return where

def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]sparsify[/] {task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), disable=not enabled)


def _schedule(
    engine: _Engine, names: Sequence[str] | None, order: str, *, forward_order: bool = False
) -> list[Consumer]:
    if names is None:
        cons = sorted(engine.consumers, key=lambda c: c.order)
        return cons[::-1] if order == "back_to_front" else cons
    unknown = [n for n in names if n not in engine.by_name]
    if unknown:
        raise ValueError(
            f"unknown consumer layer(s) {unknown}; prunable consumers are "
            f"{[c.name for c in engine.consumers]}"
        )
    cons = [engine.by_name[n] for n in names]
    return sorted(cons, key=lambda c: c.order) if forward_order else cons


def _run(
    model: nn.Module,
    loader: Iterable | None,
    config: SparsifyConfig,
    schedule_names: Sequence[str] | None,
    criterion: Criterion,
    example: Tensor,
    *,
    forward_order: bool = False,
    strict: bool = False,
    share: dict[str, Any] | None = None,
) -> SparsifyResult:
    unknown = sorted(config.layer_overrides)
    engine = _Engine(model, loader, config, example)
    data = engine.data
    if share is not None and share.get("ref_cache") is not None:
        data.preset = (share["batches"], share["ref_cache"])
    try:
        bad = [n for n in unknown if n not in engine.by_name]
        if bad:
            raise ValueError(f"layer_overrides for unknown consumer(s) {bad}; prunable "
                             f"consumers are {[c.name for c in engine.consumers]}")
        input_shape = tuple(example.shape[1:])
        before = _counts(engine.pruned, input_shape)
        schedule = _schedule(engine, schedule_names, config.order, forward_order=forward_order)
        # (position in the schedule, consumer, its unit; None once an earlier unit covered it)
        steps: list[tuple[int, Consumer, list[Consumer] | None]] = []
        done: set[str] = set()
        for unit_id, consumer in enumerate(schedule):
            unit = None if consumer.name in done else engine.unit_of(consumer)
            if unit is not None:
                done.update(c.name for c in unit)
                if engine.skip_reason(unit) is None and criterion.needs_data(unit):
                    data.planned.extend((c.name, unit_id) for c in unit)
            steps.append((unit_id, consumer, unit))
        reports: list[LayerReport] = []
        with _progress(config.progress) as progress:
            task = progress.add_task("", total=len(schedule))
            for unit_id, consumer, unit in steps:
                progress.update(task, description=consumer.name)
                if unit is None:
                    progress.advance(task)
                    continue
                reports.extend(_process_unit(engine, unit, unit_id, criterion, strict=strict))
                for r in reports[-len(unit):]:
                    line = r.summary()
                    log.info(line)
                    if config.progress:
                        progress.console.print(line)
                progress.advance(task)
        if engine.changed and config.recalibrate_bn and loader is not None:
            data.loader_passes += data.batches is None
            recalibrate_batchnorm(engine.pruned,
                                  data.batches if data.batches is not None else loader,
                                  device=engine.device, max_batches=config.max_batches)
        after = _counts(engine.pruned, input_shape)
        info = data.info()
        if share is not None and data.batches is not None and data.ref_cache is not None:
            share["batches"], share["ref_cache"] = data.batches, data.ref_cache
    finally:
        engine.close()
    return SparsifyResult(model=engine.pruned, report=reports, before=before, after=after,
                          engine=info)


@timed("unit")
def _process_unit(
    engine: _Engine,
    unit: list[Consumer],
    unit_id: int,
    criterion: Criterion,
    *,
    strict: bool = False,
) -> list[LayerReport]:
    t0 = time.perf_counter()
    head = unit[0]
    total = head.num_channels
    names = [c.name for c in unit]
    reason = engine.skip_reason(unit)
    if reason is not None and strict:
        hint = " (residual=\"coupled\" prunes these)" if "residual-coupled" in reason else ""
        raise ValueError(f"cannot prune {head.name!r}: {reason}{hint}")
    if reason is not None:
        return [LayerReport(layer=c.name, producer=", ".join(c.producers), kept=total,
                            total=total, kept_indices=list(range(total)), skipped_reason=reason,
                            seconds=time.perf_counter() - t0)
                for c in unit]
    train = held = None
    if criterion.needs_data(unit):
        train, held = engine.data.collect(unit, unit_id)
    sel = criterion.select(engine.unit_input(unit, train))
    where = engine.apply(unit, sel)
    keep = sel.keep.detach().to("cpu", torch.long)
    w_sorted = ([] if sel.w is None
                else sorted((float(v) for v in sel.w.detach().cpu()), reverse=True))
    reports = []
    for j, c in enumerate(unit):
        err_tr = err_ho = math.nan
        if train is not None and held is not None and sel.params is not None:
            weight, bias = sel.params[j]
            err_tr = reconstruction_error(train[j], keep, weight, bias)
            if held[j].n > 0:
                err_ho = reconstruction_error(held[j], keep, weight, bias)
        reports.append(LayerReport(
            layer=c.name, producer=", ".join(c.producers), kept=int(keep.numel()), total=total,
            kept_indices=[int(i) for i in keep], sorted_w=w_sorted, gap=sel.gap,
            gap_flag=bool(sel.gap < GAP_FLAG_THRESHOLD), rel_error_train=err_tr,
            rel_error_heldout=err_ho, iterations=sel.iterations,
            seconds=time.perf_counter() - t0, coupled_with=[n for n in names if n != c.name],
            converged=sel.converged, samples=train[j].n if train is not None else 0,
            features=total * c.regression_group_size, intercept=where[j],
        ))
    return reports


def sparsify(
    model: nn.Module,
    calib_loader: Iterable,
    config: SparsifyConfig | None = None,
    *,
    target_macs: float | None = None,
    target_params: float | None = None,
    target_latency_ms: float | None = None,
    latency_device: str | None = None,
    latency_batch_size: int = 1,
    latency_threads: int | None = None,
) -> SparsifyResult:
    """Prune a trained network layer by layer with sparse entropic regression.

    Args:
        model: A trained network of Conv2d / Linear / BatchNorm layers (plus parameter-free
            ops). Never modified; its device is used unless ``config.device`` says otherwise.
        calib_loader: Iterable of calibration batches (tensors, ``(inputs, targets)`` pairs or
            dicts with an ``"input"`` tensor). A re-iterable loader is read as needed (once
            with the activation caches, once per layer without); a one-shot iterator or
            generator is read once into a list (its first ``max_batches`` items), so no
            batch is lost to the trace.
        config: Settings; defaults to ``SparsifyConfig()``.
        target_macs: Budget: MACs per input sample (conv + linear), a ratio of the original
            in (0, 1] or an absolute count > 1. The widths are then allocated across layers
            from per-layer error-vs-width curves (:mod:`pruning.budget`); ``eps_L2`` only
            ranks the channels. At most one target.
        target_params: Budget in parameters (all of them, BN included), ratio or count.
        target_latency_ms: Budget in ms per batch of ``latency_batch_size`` on
            ``latency_device`` (required) with ``latency_threads`` torch threads.
        latency_device: Device for the latency target, e.g. ``"cpu"``, ``"cuda"``.
        latency_batch_size: Batch size the latency is measured at.
        latency_threads: Torch threads for the latency measurement (None: current).

    Returns:
        SparsifyResult with the pruned copy, one LayerReport per consumer, and the parameter
        and MAC counts (per input sample, conv + linear MACs) before and after; with a
        target also ``budget`` (target vs reached).

    Raises:
        UnsupportedLayerError: The model holds a parametrised layer other than Conv2d,
            Linear or BatchNorm; the message names it.
        NonFiniteActivationError: NaN/Inf activations at a layer, named in the message.
        InputMismatchError: The batches do not fit the model (a ValueError naming the
            first layer whose input channels / features are wrong, and the batch shape).
        ValueError: Unknown layer names in ``config.layers`` / ``layer_overrides``.
        BudgetError: A malformed target (<= 0, two at once, latency without a device) or
            one that cannot be reached with every layer at ``min_channels``; raised before
            any data pass, naming the argument.

    Reference: Barisin & Horenko, arXiv:2404.04734 (Neural Computation 2025).
    """
    from pruning.budget import make_target, sparsify_to_budget

    config = config or SparsifyConfig()
    target = make_target(target_macs=target_macs, target_params=target_params,
                         target_latency_ms=target_latency_ms, latency_device=latency_device,
                         latency_batch_size=latency_batch_size, latency_threads=latency_threads)
    calib_loader = reiterable(calib_loader, config.max_batches)
    example = first_batch(calib_loader)[:1]
    check_input_fits(model, example.to(model_device(model)))
    if target is not None:
        return sparsify_to_budget(model, calib_loader, config, target, example)
    return _run(model, calib_loader, config, config.layers, Entropic(), example)


def _example(model: nn.Module, calib_loader: Iterable | None, example_inputs: Tensor | None,
             max_batches: int | None, *, who: str) -> tuple[Iterable | None, Tensor]:
    """The loader made re-iterable and one batch for tracing, checked against the model."""
    if calib_loader is not None:
        calib_loader = reiterable(calib_loader, max_batches)
        example = first_batch(calib_loader)[:1]
    elif example_inputs is not None:
        example = example_inputs[:1]
    elif getattr(model, "arch_input_shape", None) is not None:
        example = torch.randn(1, *model.arch_input_shape)  # type: ignore[misc]
    else:
        raise ValueError(f"{who}: pass calib_loader or example_inputs for tracing")
    return calib_loader, example


def _check_example(model: nn.Module, example: Tensor, with_loader: bool) -> None:
    check_input_fits(model, example.to(model_device(model)),
                     what="calibration batch" if with_loader else "example_inputs")


def prune_to_widths(
    model: nn.Module,
    keep: Mapping[str, Tensor | Sequence[int]],
    calib_loader: Iterable | None = None,
    refit: bool = True,
    *,
    config: SparsifyConfig | None = None,
    example_inputs: Tensor | None = None,
    _share: dict[str, Any] | None = None,
) -> SparsifyResult:
    """Remove given input channels per consumer, optionally with the least-squares refit.

    The baseline twin of :func:`sparsify`: the channels are chosen outside (L1 magnitude,
    random, another method's widths ...) and the same surgery, the same refit on the same
    calibration data and the same BN recalibration follow, so selection criteria can be
    compared at equal widths (:class:`pruning.criteria.GivenChannels`).

    Args:
        model: The network (never modified).
        keep: Consumer name -> kept input-channel indices (in the layer's input numbering).
            Layers are processed in forward order. In ``residual="coupled"`` mode a coupled
            consumer's keep set applies to all its co-consumers, each refitted on its own.
        calib_loader: Calibration data; needed for ``refit`` and BN recalibration.
        refit: Refit each pruned consumer's weights and bias by least squares on X from the
            pruned-so-far network and Y from the original (``config.target_source``).
            Without it the kept weights are left as they were.
        config: Data and refit settings (``regression.refit_ridge``, positions, device ...).
        example_inputs: A batch for tracing when there is no ``calib_loader`` (else the
            model's ``arch_input_shape`` is used).
        _share: Internal (pruning.budget): calibration batches and reference outputs of
            an earlier pass over the same model and data, reused instead of recomputed.

    Raises:
        ValueError: A named layer is not a consumer or cannot be pruned in this mode (e.g.
            residual-coupled with ``residual="inner"``), or a keep set is out of range.
    """
    config = config or SparsifyConfig()
    calib_loader, example = _example(model, calib_loader, example_inputs, config.max_batches,
                                     who="prune_to_widths")
    if refit and calib_loader is None:
        raise ValueError("prune_to_widths: refit=True needs a calib_loader")
    _check_example(model, example, calib_loader is not None)
    criterion = GivenChannels(keep, refit=refit)
    cfg = dataclasses.replace(config, layers=None, layer_overrides={})
    if not refit:  # no regression data: the size limit on d does not apply
        cfg = dataclasses.replace(cfg, max_features=sys.maxsize)
    return _run(model, calib_loader, cfg, list(criterion.keep), criterion, example,
                forward_order=True, strict=True, share=_share)


def prune_with(
    model: nn.Module,
    criterion: Criterion,
    calib_loader: Iterable | None = None,
    *,
    config: SparsifyConfig | None = None,
    layers: Sequence[str] | None = None,
    example_inputs: Tensor | None = None,
) -> SparsifyResult:
    """The layer-by-layer pass with any selection criterion (:mod:`pruning.criteria`).

    ``prune_with(model, Entropic(), loader, config=cfg)`` is ``sparsify(model, loader, cfg)``
    without a budget; ``prune_with(model, L1Magnitude(0.5), loader)`` keeps the half of
    every layer's channels with the largest producer L1 norm.

    Args:
        model: The network (never modified).
        criterion: Chooses each unit's channels.
        calib_loader: Calibration data; needed when the criterion reads moments (and for
            BN recalibration).
        config: Settings (the regression settings reach the criterion as ``Unit.setting``).
        layers: Consumers to visit, in forward order; a named one that cannot be pruned
            raises. None: ``config.layers`` (in that order), else all in ``config.order``,
            unprunable ones reported as skipped.
        example_inputs: A batch for tracing when there is no ``calib_loader``.

    Raises:
        ValueError: The criterion needs data and there is no ``calib_loader``, unknown or
            unprunable layers, or a criterion's own error.
    """
    config = config or SparsifyConfig()
    calib_loader, example = _example(model, calib_loader, example_inputs, config.max_batches,
                                     who="prune_with")
    _check_example(model, example, calib_loader is not None)
    if calib_loader is None and criterion.needs_data([]):
        raise ValueError(f"prune_with: {type(criterion).__name__} reads the layers' moments and "
                         "needs a calib_loader")
    if layers is not None:
        return _run(model, calib_loader, config, list(layers), criterion, example,
                    forward_order=True, strict=True)
    return _run(model, calib_loader, config, config.layers, criterion, example)
