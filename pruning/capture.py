"""Data collection of a sparsify pass: from calibration batches to each layer's moments.

For a unit (one consumer, or a coupled set) the pass needs X, the layer's input in the
network pruned so far, and Y, its pre-BN output in the original network, at the same sampled
positions. :class:`Collector` gets them either from the activation caches
(:mod:`pruning.activations`: Y of every layer from one reference pass, X resumed from the
latest cached activation) or, when a cache is off or over budget, from forward passes with
hooks (:func:`capture`, stopped once the hooked layers were reached), and streams them into
:class:`pruning.moments.Moments` with a held-out share. Also here: reading the caller's
batches (tensors, ``(inputs, targets)`` pairs, dicts), the NaN/Inf check that names the
layer, and saving / restoring the train/eval modes of a model.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from pruning.activations import (
    CalibrationBatches,
    PrunedActivations,
    ReferenceOutputs,
    default_cache_budget,
)
from pruning.measure import model_device
from pruning.moments import Moments, feature_columns
from pruning.patches import conv_patches, gather_outputs, positions_for
from pruning.phases import timed
from pruning.surgery import Consumer

__all__ = ["Collector", "NonFiniteActivationError", "batch_inputs", "capture", "check_finite",
           "first_batch", "iter_inputs", "model_device", "restore_modes", "snapshot_modes"]

log = logging.getLogger(__name__)


class NonFiniteActivationError(FloatingPointError):
    """NaN/Inf activations met while collecting a layer's regression data."""


# ---------------------------------------------------------------------- the caller's batches


def batch_inputs(batch: Any) -> Tensor:
    """The input tensor of one calibration item (a tensor, a pair or a dict)."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    if isinstance(batch, Mapping):
        for key in ("input", "inputs", "x", "image", "images"):
            if isinstance(batch.get(key), Tensor):
                return batch[key]
    raise TypeError(
        "calibration loader must yield tensors, (inputs, targets) pairs or dicts with an "
        f"'input'/'x'/'image' tensor; got {type(batch).__name__}"
    )


def iter_inputs(loader: Iterable, device: torch.device, max_batches: int | None
                ) -> Iterator[Tensor]:
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        yield batch_inputs(batch).to(device)


def first_batch(loader: Iterable) -> Tensor:
    for batch in loader:
        return batch_inputs(batch)
    raise ValueError("calibration loader is empty")


def snapshot_modes(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def restore_modes(model: nn.Module, modes: Mapping[str, bool]) -> None:
    for name, m in model.named_modules():
        if name in modes:
            m.train(modes[name])


# ---------------------------------------------------------------------- hooks and checks


class _StopForward(Exception):
    """Raised from a hook once everything wanted from a forward pass was captured."""


@timed("forward.{want}")
def capture(
    model: nn.Module,
    x: Tensor,
    modules: Sequence[nn.Module],
    *,
    want: Literal["input", "output"],
) -> list[Tensor]:
    """Inputs (or outputs) of ``modules`` for batch ``x``; stops the forward pass early."""
    store: dict[int, Tensor] = {}
    handles = []

    def make(i: int):
        def pre(_mod, args):
            if i not in store:
                store[i] = args[0].detach()
                if len(store) == len(modules):
                    raise _StopForward

        def post(_mod, _args, out):
            if i not in store:
                store[i] = (out[0] if isinstance(out, tuple) else out).detach()
                if len(store) == len(modules):
                    raise _StopForward

        return pre, post

    for i, mod in enumerate(modules):
        pre, post = make(i)
        handles.append(mod.register_forward_pre_hook(pre) if want == "input"
                       else mod.register_forward_hook(post))
    try:
        with torch.no_grad():
            model(x)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = [i for i in range(len(modules)) if i not in store]
    if missing:
        raise RuntimeError(f"forward pass never reached {len(missing)} of the hooked layers")
    return [store[i] for i in range(len(modules))]


@timed("checks")
def check_finite(t: Tensor, layer: str, what: str, batch: int) -> None:
    if not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).sum())
        raise NonFiniteActivationError(
            f"layer {layer!r}: {n_bad} non-finite (NaN/Inf) values in its {what} "
            f"(calibration batch {batch}); fix the model or data before pruning"
        )


def _nbytes_of(t: Tensor) -> int:
    return int(t.numel()) * t.element_size()


def _accumulate(c: Consumer, train: Moments, held: Moments, X: Tensor, Y: Tensor,
                mask: Tensor | None) -> None:
    """Add one batch's (X, Y) rows of consumer ``c``; rows where ``mask`` is set are held out."""
    if X.shape[1] != c.num_channels * c.regression_group_size:
        raise RuntimeError(f"{c.name}: collected {X.shape[1]} features, expected "
                           f"{c.num_channels * c.regression_group_size}")
    if mask is None:
        train.update(X, Y)
        return
    mask = mask.to(X.device)
    train.update(X[~mask], Y[~mask])
    held.update(X[mask], Y[mask])


def _check_samples(train: list[Moments]) -> None:
    if any(m.n == 0 for m in train):
        raise ValueError("calibration loader yielded no samples")


# ---------------------------------------------------------------------- the collector


class Collector:
    """Streams the (X, Y) moments of a unit's consumers; owns the activation caches.

    Args:
        config: The pass's :class:`pruning.config.SparsifyConfig` (positions, held-out
            share, seed, target source, caches, moments dtype, ``max_batches``).
        loader: The calibration batches (None: a pass without data).
        device: Where the networks and the moments live.
        reference: The original network (Y; X too with ``target_source="original"``).
        pruned: The network pruned so far (X).
        consumers: Every consumer of ``pruned`` (the caches follow all of them).
        out_index: Producer name -> original index of each current output channel; the
            engine updates it after each surgery.

    Attributes:
        planned: (consumer, unit id) of every consumer that will be regressed, in processing
            order; set before the first :meth:`collect` (the reference cache stores them).
        preset: (batches, reference outputs) of an earlier pass over the same model and
            data (``pruning.budget``'s plan pass), used instead of reading them again.
        batches, ref_cache, act_cache: The caches (None when off).
        loader_passes: How often the loader was read.
    """

    def __init__(self, config: Any, loader: Iterable | None, device: torch.device,
                 reference: nn.Module, pruned: nn.Module, consumers: Sequence[Consumer],
                 out_index: dict[str, Tensor]) -> None:
        self.config = config
        self.loader = loader
        self.device = device
        self.reference = reference
        self.pruned = pruned
        self.consumers = list(consumers)
        self.by_name = {c.name: c for c in self.consumers}
        self.ref_modules = dict(reference.named_modules())
        self.out_index = out_index
        self.planned: list[tuple[str, int]] = []
        self.preset: tuple[list[Tensor], ReferenceOutputs] | None = None
        self.preset_used = False  # the preset's batches and reference outputs were read
        self.loader_passes = 0
        self._images: int | None = None
        self._caches_ready = False
        self.batches: list[Tensor] | None = None
        self.ref_cache: ReferenceOutputs | None = None
        self.act_cache: PrunedActivations | None = None

    def close(self) -> None:
        self.batches = None
        self.ref_cache = None
        self.act_cache = None

    def info(self) -> dict[str, Any]:
        return {"batches_cached": self.batches is not None,
                "reference_cached": bool(self.ref_cache is not None and self.ref_cache.enabled),
                "activations_cached": self.act_cache is not None,
                "resumed": self.act_cache.resumed if self.act_cache is not None else 0,
                "loader_passes": self.loader_passes}

    def _build_caches(self) -> None:
        self._caches_ready = True
        cfg = self.config
        if not cfg.cache_activations or cfg.target_source != "pruned" or self.loader is None:
            return
        budget = (cfg.cache_budget_bytes if cfg.cache_budget_bytes is not None
                  else default_cache_budget(self.device))
        if self.preset is not None and all(self.preset[1].has(n) for n, _ in self.planned
                                           if n in self.by_name):
            self.batches, self.ref_cache = self.preset
            self.preset_used = True
            budget -= sum(_nbytes_of(b) for b in self.batches)
            budget -= sum(r.y.numel() * r.y.element_size()
                          for rows in self.ref_cache.rows.values() for r in rows)
            acts = PrunedActivations(self.pruned, [c.name for c in self.consumers],
                                     len(self.batches), max(budget, 0))
            self.act_cache = acts if acts.enabled else None
            return
        self.loader_passes += 1
        cal = CalibrationBatches(self.loader, batch_inputs, self.device, cfg.max_batches,
                                 budget)
        if not cal.enabled or not cal.batches:
            return
        self.batches = cal.batches
        budget -= cal.nbytes
        stream = {n: uid for n, uid in self.planned if n in self.by_name}
        names = list(stream)
        self.ref_cache = ReferenceOutputs(
            self.reference, {n: self.ref_modules[n] for n in names}, self.batches,
            positions_per_image=cfg.calib_positions_per_image,
            rows_per_feature=cfg.calib_rows_per_feature,
            heldout_fraction=cfg.heldout_fraction, seed=cfg.seed, stream=stream, budget=budget,
            check=lambda name, y, b: check_finite(y, name, "reference outputs", b))
        if self.ref_cache.enabled:
            budget -= sum(r.y.numel() * r.y.element_size()
                          for rows in self.ref_cache.rows.values() for r in rows)
        else:
            log.info("sparsify: reference outputs exceed the cache budget; per-layer passes")
        acts = PrunedActivations(self.pruned, [c.name for c in self.consumers],
                                 len(self.batches), max(budget, 0))
        self.act_cache = acts if acts.enabled else None

    def _moments(self, c: Consumer) -> Moments:
        dtype = torch.float32 if self.config.moments_dtype == "float32" else torch.float64
        return Moments(c.num_channels, c.regression_group_size, c.num_outputs,
                       device=self.device, product_dtype=dtype)

    def _n_images(self) -> int:
        """Calibration images in the pass (read once more from the loader when the
        batches are not cached and the positions rule needs the count)."""
        if self._images is None:
            cfg = self.config
            if cfg.calib_rows_per_feature is None or cfg.calib_positions_per_image is None:
                return 0  # the rule is off, or every position is taken: the count is not read
            if self.batches is not None:
                self._images = sum(int(x.shape[0]) for x in self.batches)
            else:  # counted on the host, nothing moved to the device
                assert self.loader is not None
                self._images = sum(int(batch_inputs(b).shape[0]) for b in
                                   itertools.islice(self.loader, cfg.max_batches))
        return self._images

    def _inputs(self) -> Iterable[Tensor]:
        if self.batches is not None:
            return iter(self.batches)
        assert self.loader is not None
        self.loader_passes += 1
        return iter_inputs(self.loader, self.device, self.config.max_batches)

    @timed("collect")
    def collect(self, unit: list[Consumer], unit_id: int) -> tuple[list[Moments], list[Moments]]:
        """Stream the (X, Y) moments of every member, with a held-out split."""
        if not self._caches_ready:
            self._build_caches()
        ref = self.ref_cache
        if ref is not None and all(ref.has(c.name) for c in unit):
            return self._collect_cached(unit, ref)
        cfg = self.config
        dev = self.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(cfg.seed * 1_000_003 + unit_id)
        x_source = self.pruned if cfg.target_source == "pruned" else self.reference
        x_mods = [x_source.get_submodule(c.name) for c in unit]
        y_mods = [self.ref_modules[c.name] for c in unit]
        train = [self._moments(c) for c in unit]
        held = [self._moments(c) for c in unit]
        assert self.loader is not None
        n_images = self._n_images()
        for b, x in enumerate(self._inputs()):
            xs = capture(x_source, x, x_mods, want="input")
            ys = capture(self.reference, x, y_mods, want="output")
            for j, c in enumerate(unit):
                A, Yfull = xs[j], ys[j]
                check_finite(A, c.name, "input activations", b)
                check_finite(Yfull, c.name, "reference outputs", b)
                out_idx = self.out_index[c.name].to(Yfull.device)
                if x_source is self.reference:
                    A = self._select_inputs(A, c)
                if isinstance(c.module, nn.Conv2d):
                    ref_conv = y_mods[j]
                    assert isinstance(ref_conv, nn.Conv2d)
                    per = positions_for(ref_conv, (Yfull.shape[2], Yfull.shape[3]), n_images,
                                        floor=cfg.calib_positions_per_image,
                                        rows_per_feature=cfg.calib_rows_per_feature)
                    X, index = conv_patches(A, c.module, positions_per_image=per, generator=gen)
                    Y = gather_outputs(Yfull, index).index_select(1, out_idx)
                else:
                    X = A.reshape(-1, A.shape[-1])
                    Y = Yfull.reshape(-1, Yfull.shape[-1]).index_select(1, out_idx)
                mask = None
                if cfg.heldout_fraction > 0:
                    mask = torch.rand(X.shape[0], generator=gen, device=dev) < cfg.heldout_fraction
                _accumulate(c, train[j], held[j], X, Y, mask)
        _check_samples(train)
        return train, held

    def _collect_cached(self, unit: list[Consumer],
                        ref: ReferenceOutputs) -> tuple[list[Moments], list[Moments]]:
        """``collect`` from the caches: Y stored, X resumed from cached activations."""
        acts = self.act_cache
        names = [c.name for c in unit]
        x_mods = [self.pruned.get_submodule(n) for n in names]
        train = [self._moments(c) for c in unit]
        held = [self._moments(c) for c in unit]
        assert self.batches is not None
        kept_inputs: list[list[Tensor]] = []
        for b, x in enumerate(self.batches):
            if acts is not None:
                xs = acts.inputs(names, b, x)
                kept_inputs.append(xs)
            else:
                xs = capture(self.pruned, x, x_mods, want="input")
            for j, c in enumerate(unit):
                A = xs[j]
                check_finite(A, c.name, "input activations", b)
                rows = ref.rows[c.name][b]
                Y = rows.y.index_select(1, self.out_index[c.name].to(rows.y.device))
                if isinstance(c.module, nn.Conv2d):
                    X, _ = conv_patches(A, c.module, positions_per_image=None, generator=None,
                                        index=rows.index)
                else:
                    X = A.reshape(-1, A.shape[-1])
                _accumulate(c, train[j], held[j], X, Y, rows.mask)
        if acts is not None:
            acts.store(names, kept_inputs)
        _check_samples(train)
        return train, held

    def _select_inputs(self, A: Tensor, c: Consumer) -> Tensor:
        """Original-network input restricted to the consumer's current input channels."""
        idx = self.out_index[c.producers[0]].to(A.device)
        if c.kind == "conv":
            return A.index_select(1, idx)
        cols = feature_columns(idx, c.features_per_channel)
        return A.reshape(-1, A.shape[-1]).index_select(1, cols)
