"""The layer-by-layer pass as a public object: :class:`Pass`.

A :class:`Pass` holds both networks (the original, read for the targets Y, and a deep copy
that is pruned in place), the dependency graph, the consumers grouped into units, the
index bookkeeping of every surgery and the data side (:class:`pruning.capture.Collector`,
which owns the activation caches). :meth:`Pass.run` visits the units in schedule order and,
for each, collects the moments, lets a :class:`pruning.criteria.Criterion` choose the
channels, removes the others and writes the refitted weights; BatchNorm statistics are
re-estimated at the end. :func:`pruning.sparsify`, :func:`pruning.prune_to_widths`,
:func:`pruning.prune_with` and the budgeted pass (:mod:`pruning.budget`) are all one
:class:`Pass` each, or two sharing a :class:`CalibCache`.

Example:
    >>> with Pass(model, loader, SparsifyConfig(), example) as p:
    ...     [u[0].name for u in p.units() if p.skip_reason(u) is None]   # what can be pruned
    ...     result = p.run(Entropic())
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from pruning.activations import ReferenceOutputs, changed_modules, module_state
from pruning.bn import recalibrate_batchnorm
from pruning.capture import Collector, model_device, restore_modes, snapshot_modes
from pruning.config import (
    GAP_FLAG_THRESHOLD,
    LayerReport,
    SparsifyConfig,
    SparsifyResult,
    layer_setting,
)
from pruning.cost import channel_costs, strength_factors
from pruning.criteria import Criterion, GivenChannels, SameWidths, Selection, Unit
from pruning.measure import count_macs, count_params, prunable_params
from pruning.moments import Moments
from pruning.phases import timed
from pruning.regression import (
    RegressionConfig,
    effective_ridge,
    reconstruction_error,
    refit_on_heldout,
)
from pruning.surgery import (
    Consumer,
    build_graph,
    discover_consumers,
    remove_input_channels,
    set_consumer_parameters,
)

__all__ = ["CalibCache", "Pass", "run_given"]

log = logging.getLogger("pruning.sparsify")


# coupling -> the skip reason discover_consumers gives a consumer left alone only for it
_COUPLED_SKIPS = {"residual": "residual-coupled input channels",
                  "shared": "shared-coupled input channels"}


@dataclass
class CalibCache:
    """What one pass over a model and its calibration data leaves for the next pass over
    the same model and data: the batches as read, and the original network's outputs at the
    sampled positions. ``Pass.run(..., cache=c)`` fills an empty one and reads a filled one
    (the budget's plan pass fills it, its final pass reads it). ``plans`` holds what a plan
    pass learnt that does not depend on the call (:mod:`pruning.budget`'s greedy plan: each
    unit's ranking and error curve on the unpruned network), valid under ``key``."""

    batches: list[Tensor] | None = None
    reference: ReferenceOutputs | None = None
    key: tuple[Any, ...] | None = None  # the model and sampling it was filled for
    plans: dict[Any, Any] = field(default_factory=dict)

    @property
    def filled(self) -> bool:
        return self.batches is not None and self.reference is not None

    def clear(self) -> None:
        self.batches = self.reference = self.key = None
        self.plans.clear()


def calib_cache_key(model: nn.Module, config: SparsifyConfig,
                    example: Tensor | None = None) -> tuple[Any, ...]:
    """What a :class:`CalibCache` depends on: the model's weights (every tensor's name,
    shape and two checksums), the calibration data (the first image's shape and checksums)
    and the settings that read and sample them. A cache filled under another key is
    refilled, never read: the reference outputs of one model are not another's, even one of
    the same architecture."""

    def sums(t: Tensor) -> tuple[Any, ...]:
        d = t.detach().double()
        return (tuple(t.shape), float(d.sum()), float(d.abs().sum()))

    with torch.no_grad():
        weights = tuple((name, *sums(t)) for name, t in model.state_dict().items()
                        if t.is_floating_point())
        data = None if example is None else sums(example)
    return (weights, data, config.seed, config.calib_positions_per_image,
            config.calib_rows_per_feature, config.heldout_fraction, config.max_batches, str(config.device))


@timed("measure")
def _counts(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    return {"params": int(count_params(model)),
            "prunable_params": int(prunable_params(model)),
            "macs": int(count_macs(model, input_shape))}


class Pass:
    """One layer-by-layer pass over a copy of ``model`` (see the module docstring).

    Args:
        model: The trained network; never modified (its modes are restored on close).
        loader: Re-iterable calibration batches, or None for a pass without data (given
            channels, no refit; the budget's candidates).
        config: The pass's settings.
        example: One input batch (``(1, *input_shape)``) for tracing.

    Attributes:
        reference: The original network (Y).
        pruned: The copy being pruned; the result's model.
        consumers: Every Conv2d / Linear fed by another one, with its coupling.
        out_index: Producer name -> original index of each current output channel.
        data: The data side (moments, caches).
    """

    @timed("setup")
    def __init__(
        self,
        model: nn.Module,
        loader: Iterable | None,
        config: SparsifyConfig,
        example: Tensor,
    ) -> None:
        self.config = config
        self.loader = loader
        self._ran = False
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

    def __enter__(self) -> Pass:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schedule(self, names: Sequence[str] | None = None, order: str | None = None, *,
                 forward_order: bool = False) -> list[Consumer]:
        """Consumers in processing order: all of them in ``order`` (default: the config's),
        or the named ones as given (sorted forward with ``forward_order``).

        Raises:
            ValueError: An unknown name; the message lists the prunable consumers.
        """
        order = order or self.config.order
        if names is None:
            cons = sorted(self.consumers, key=lambda c: c.order)
            return cons[::-1] if order == "back_to_front" else cons
        unknown = [n for n in names if n not in self.by_name]
        if unknown:
            raise ValueError(
                f"unknown consumer layer(s) {unknown}; prunable consumers are "
                f"{[c.name for c in self.consumers]}"
            )
        cons = [self.by_name[n] for n in names]
        return sorted(cons, key=lambda c: c.order) if forward_order else cons

    def units(self, names: Sequence[str] | None = None, order: str | None = None, *,
              forward_order: bool = False) -> list[list[Consumer]]:
        """The schedule grouped into units (each consumer once; skipped units included:
        :meth:`skip_reason` tells them apart)."""
        out: list[list[Consumer]] = []
        done: set[str] = set()
        for consumer in self.schedule(names, order, forward_order=forward_order):
            if consumer.name in done:
                continue
            unit = self.unit_of(consumer)
            done.update(c.name for c in unit)
            out.append(unit)
        return out

    def prunable_units(self, names: Sequence[str] | None = None) -> list[list[Consumer]]:
        """:meth:`units` without the ones that cannot be pruned."""
        return [u for u in self.units(names) if self.skip_reason(u) is None]

    # -- units ------------------------------------------------------------------------

    def _coupled_unit(self, consumer: Consumer) -> list[Consumer] | None:
        """In coupled mode, the consumers sharing ``consumer``'s channels as one unit -
        joined by a residual addition, or one producer read by several layers (a stem
        feeding a block and its projection shortcut, Inception-style branches) - when each
        is left alone only for that coupling; None otherwise."""
        if self.config.residual != "coupled" or consumer.coupling not in _COUPLED_SKIPS:
            return None
        members = [self.by_name[n] for n in consumer.consumers if n in self.by_name]
        if all(m.skip_reason in (None, *_COUPLED_SKIPS.values()) for m in members):
            return sorted(members, key=lambda c: c.order)
        return None

    def unit_of(self, consumer: Consumer) -> list[Consumer]:
        """The consumers processed together with ``consumer`` (itself unless coupled)."""
        return self._coupled_unit(consumer) or [consumer]

    def skip_reason(self, unit: list[Consumer]) -> str | None:
        head = unit[0]
        # (a coupled set of one - a residual stream read only by the head - is a unit too)
        coupled = [c.name for c in self._coupled_unit(head) or []]
        if len(unit) == 1 and head.skip_reason is not None and coupled != [head.name]:
            return head.skip_reason
        d = head.num_channels * sum(c.regression_group_size for c in unit)
        if d > self.config.max_features:
            return f"regression too large (d={d} > max_features={self.config.max_features})"
        return None

    # -- selection ------------------------------------------------------------------

    def _strengths(self) -> dict[str, float]:
        units = [u for u in self.units(order="front_to_back") if self.skip_reason(u) is None]
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
            if c.name in head.producers:
                # The consumer's own outputs are this group's channels (a residual stream
                # through a channel-preserving depthwise conv into its own input): they were
                # just cut with its inputs, so only the kept rows of its refit remain.
                rows = keep.to(weight.device)
                weight = weight.index_select(0, rows)
                bias = None if bias is None else bias.reshape(-1).index_select(0, rows)
            where.append(set_consumer_parameters(self.pruned, c, weight, bias))
        if self.data.act_cache is not None and before is not None:
            refitted = [c.name for c in unit] + [c.bn_after for c in unit if c.bn_after]
            self.data.act_cache.after_surgery(
                [c.name for c in unit], changed_modules(before, module_state(self.pruned)),
                refitted, keep, {c.name: c.features_per_channel for c in unit})
        return where


    # -- the pass ---------------------------------------------------------------------

    def run(self, criterion: Criterion, layers: Sequence[str] | None = None, *,
            forward_order: bool = False, strict: bool = False,
            cache: CalibCache | None = None) -> SparsifyResult:
        """Prune: every unit of the schedule in turn, then BatchNorm recalibration.

        Args:
            criterion: Chooses each unit's channels (and its refitted weights).
            layers: Consumers to visit (None: all, in the config's order).
            forward_order: Visit ``layers`` in forward order instead of as given.
            strict: A named layer that cannot be pruned raises instead of being reported
                as skipped.
            cache: Calibration batches and reference outputs to reuse (a filled cache) or
                to keep for a later pass over the same model and data (an empty one).

        A pass runs once: the pruned copy is the result's model. The pass is closed (hooks
        removed, the caller's modes restored) when this returns or raises.
        """
        if self._ran:
            raise RuntimeError("Pass.run: a pass runs once; make a new Pass")
        self._ran = True
        try:
            return self._run(criterion, layers, forward_order=forward_order, strict=strict,
                             cache=cache)
        finally:
            self.close()

    def _run(self, criterion: Criterion, layers: Sequence[str] | None, *, forward_order: bool,
             strict: bool, cache: CalibCache | None) -> SparsifyResult:
        config, data = self.config, self.data
        key = (calib_cache_key(self.reference, config, self.example) if cache is not None
               else None)
        if cache is not None and cache.filled and cache.key != key:
            log.info("sparsify: the calibration cache was filled for another model or "
                     "sampling; refilling it")
            cache.clear()
        if cache is not None and cache.filled:
            assert cache.batches is not None and cache.reference is not None
            data.preset = (cache.batches, cache.reference)
        bad = [n for n in sorted(config.layer_overrides) if n not in self.by_name]
        if bad:
            raise ValueError(f"layer_overrides for unknown consumer(s) {bad}; prunable "
                             f"consumers are {[c.name for c in self.consumers]}")
        input_shape = tuple(self.example.shape[1:])
        before = _counts(self.pruned, input_shape)
        schedule = self.schedule(layers, forward_order=forward_order)
        # (position in the schedule, consumer, its unit; None once an earlier unit covered it)
        steps: list[tuple[int, Consumer, list[Consumer] | None]] = []
        done: set[str] = set()
        for unit_id, consumer in enumerate(schedule):
            unit = None if consumer.name in done else self.unit_of(consumer)
            if unit is not None:
                done.update(c.name for c in unit)
                if self.skip_reason(unit) is None and criterion.needs_data(unit):
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
                reports.extend(self._process(unit, unit_id, criterion, strict=strict))
                for r in reports[-len(unit):]:
                    line = r.summary()
                    log.info(line)
                    if config.progress:
                        progress.console.print(line)
                progress.advance(task)
        if self.changed and config.recalibrate_bn and self.loader is not None:
            data.loader_passes += data.batches is None
            recalibrate_batchnorm(self.pruned,
                                  data.batches if data.batches is not None else self.loader,
                                  device=self.device, max_batches=config.max_batches)
        after = _counts(self.pruned, input_shape)
        info = data.info()
        if cache is not None:  # the cache's batches and reference outputs were read
            info["calib_cache_reused"] = data.preset_used
        if cache is not None and data.batches is not None and data.ref_cache is not None:
            cache.batches, cache.reference, cache.key = data.batches, data.ref_cache, key
        return SparsifyResult(model=self.pruned, report=reports, before=before, after=after,
                              engine=info)

    @timed("unit")
    def _process(self, unit: list[Consumer], unit_id: int, criterion: Criterion, *,
                 strict: bool = False) -> list[LayerReport]:
        t0 = time.perf_counter()
        head = unit[0]
        total = head.num_channels
        names = [c.name for c in unit]
        reason = self.skip_reason(unit)
        no_data = False
        if (reason is not None and reason.startswith("regression too large")
                and isinstance(criterion, GivenChannels)):
            # a size limit, not a structural one: given channels are cut, the layer keeps
            # its own weights for them (no least-squares refit)
            log.warning("%s: %s; its given channels are cut without the refit", head.name,
                        reason)
            reason, no_data = None, True
        if reason is not None and strict:
            hint = " (residual=\"coupled\" prunes these)" if "residual-coupled" in reason else ""
            raise ValueError(f"cannot prune {head.name!r}: {reason}{hint}")
        if reason is not None:
            return [LayerReport(layer=c.name, producer=", ".join(c.producers), kept=total,
                                total=total, kept_indices=list(range(total)),
                                skipped_reason=reason, seconds=time.perf_counter() - t0)
                    for c in unit]
        reads_data = criterion.needs_data(unit) and not no_data
        # Channels known before the data (given channels): cut first, then collect the kept
        # channels' moments only (the same refit, the products far cheaper). Only where the
        # cut leaves the inputs to collect as they were: X from the original network, or a
        # unit of one consumer (in a coupled unit one member can feed another through the
        # shared channels, and it would be read cut but not yet refitted); never a unit that
        # reads its own outputs (they are cut with its inputs).
        early_ok = (reads_data and not any(c.name in head.producers for c in unit)
                    and (len(unit) == 1 or self.config.target_source == "original"))
        early = criterion.keep_before_data(unit) if early_ok else None
        if early is not None:
            early = early.detach().to("cpu", torch.long)
            self.apply(unit, Selection(keep=early, params=None))
        train = held = None
        if reads_data:
            train, held = self.data.collect(unit, unit_id)
        given = self.unit_input(unit, train)
        # after an early cut every remaining channel stays, refitted on its own moments
        sel = GivenChannels({}).select(given) if early is not None else criterion.select(given)
        lstsq = sel.params is not None and given.setting.refit == "lstsq"
        ridges = ([effective_ridge(train[j], int(sel.keep.numel()) * c.regression_group_size,
                                   given.setting.refit_ridge) for j, c in enumerate(unit)]
                  if lstsq and train is not None else [])
        if (self.config.refit_ridge_from_heldout and lstsq and train is not None
                and held is not None and all(h.n > 0 for h in held)):
            params = []
            for j in range(len(unit)):
                weight, bias, ridges[j] = refit_on_heldout(
                    train[j], held[j], sel.keep.to(train[j].mu_x.device))
                params.append((weight, bias))
            sel = dataclasses.replace(sel, params=params)
        where = self.apply(unit, sel)
        keep = sel.keep.detach().to("cpu", torch.long)  # in the moments' numbering
        kept = early if early is not None else keep  # in the unit's numbering before the pass
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
                layer=c.name, producer=", ".join(c.producers), kept=int(kept.numel()),
                total=total, kept_indices=[int(i) for i in kept], sorted_w=w_sorted,
                gap=sel.gap, gap_flag=bool(sel.gap < GAP_FLAG_THRESHOLD),
                rel_error_train=err_tr, rel_error_heldout=err_ho, iterations=sel.iterations,
                seconds=time.perf_counter() - t0, coupled_with=[n for n in names if n != c.name],
                converged=sel.converged, samples=train[j].n if train is not None else 0,
                features=(total if early is None else int(early.numel()))
                * c.regression_group_size, intercept=where[j],
                refit_ridge=ridges[j] if ridges else math.nan,
            ))
        return reports


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]sparsify[/] {task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), disable=not enabled)


def run_given(model: nn.Module, keep: Mapping[str, Tensor | Sequence[int]], loader: Iterable | None,
              config: SparsifyConfig, example: Tensor, *, refit: bool,
              cache: CalibCache | None = None,
              select: Callable[[Mapping[str, int]], Criterion] | None = None) -> SparsifyResult:
    """One pass that keeps the given channels per consumer (forward order, strict), with the
    least-squares refit or without (then no data is read and the size limit on the
    regression does not apply); the engine of :func:`pruning.prune_to_widths`.

    ``select`` keeps the given widths but lets that criterion choose the channels again on
    each unit's moments (:class:`pruning.criteria.SameWidths`; needs ``refit``)."""
    if select is not None and not refit:
        raise ValueError("run_given: select= chooses on the moments, so it needs refit=True")
    criterion = GivenChannels(keep, refit=refit) if select is None else SameWidths(keep, select)
    cfg = dataclasses.replace(config, layers=None, layer_overrides={})
    if not refit:
        cfg = dataclasses.replace(cfg, max_features=sys.maxsize)
    return Pass(model, loader, cfg, example).run(criterion, list(criterion.keep),
                                                 forward_order=True, strict=True, cache=cache)
