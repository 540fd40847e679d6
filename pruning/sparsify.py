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
from typing import Any, Literal

import torch
from torch import Tensor, nn

from pruning.activations import (
    CalibrationBatches,
    PrunedActivations,
    ReferenceOutputs,
    changed_modules,
    default_cache_budget,
    module_state,
)
from pruning.inputs import check_input_fits, reiterable
from pruning.moments import Moments, conv_patches, feature_columns, gather_outputs
from pruning.phases import timed
from pruning.regression import (
    RegressionConfig,
    entropic_regression,
    reconstruction_error,
    refit,
)
from pruning.surgery import (
    Consumer,
    build_graph,
    discover_consumers,
    remove_input_channels,
    set_consumer_parameters,
)

__all__ = [
    "LayerReport",
    "NonFiniteActivationError",
    "SparsifyConfig",
    "SparsifyResult",
    "l1_channel_ranking",
    "prune_to_widths",
    "recalibrate_batchnorm",
    "sparsify",
]

log = logging.getLogger(__name__)

# gap = min kept w / max dropped w below this marks an unreliable selection (spec section 6).
GAP_FLAG_THRESHOLD = 10.0

_OVERRIDE_EXTRA_KEYS = ("keep_ratio",)


class NonFiniteActivationError(FloatingPointError):
    """NaN/Inf activations met while collecting a layer's regression data."""


@dataclass
class SparsifyConfig:
    """Settings of a whole-network sparsification.

    Attributes:
        regression: Solver and selection settings shared by all layers.
        layer_overrides: Per consumer name, RegressionConfig fields to replace for that layer
            (``eps_E``, ``eps_L2``, ``tau``, ``top_k`` ...), plus ``keep_ratio`` (fraction of
            the layer's input channels to keep, turned into ``top_k``). In ``coupled`` mode
            a unit takes the merged overrides of its members, in forward order.
        calib_positions_per_image: Output positions sampled per image for conv layers
            (None: all positions). Linear layers use every sample.
        heldout_fraction: Share of samples kept out of the fit for the held-out relative
            reconstruction error.
        target_source: ``"pruned"`` (default): X from the pruned-so-far network, Y from the
            original one. ``"original"``: both from the original network (ablation).
        residual: ``"inner"`` (default): consumers whose input channels are coupled through
            a residual addition (or shared otherwise) are left alone; inside each block the
            channels are pruned. ``"coupled"``: all consumers of a residual-coupled channel
            set share one w, fitted on their stacked regressions.
        min_channels: A layer never keeps fewer input channels than this.
        recalibrate_bn: Re-estimate BatchNorm running statistics on the calibration data
            after the last layer (only if anything changed).
        layers: Consumer names to prune, in this order (the search's schedule). None: all
            consumers in ``order``.
        order: ``"front_to_back"`` (default) or ``"back_to_front"`` when ``layers`` is None.
        device: ``"auto"`` (the model's device), or a device string.
        progress: Show a rich progress bar and one summary line per layer.
        seed: Seed of the position sampling and the held-out split.
        max_features: Layers whose regression has more features d = C*k than this are
            skipped (S alone takes 8 d^2 bytes), e.g. a Linear after a 7x7 flatten.
        max_batches: Use at most this many calibration batches (None: all).
        cache_activations: Keep the calibration inputs, the original network's outputs at
            the sampled positions and the pruned network's latest consumer inputs in memory
            (:mod:`pruning.activations`), so the pass costs about two forward passes of the
            calibration set instead of two per layer. Falls back to per-layer forward
            passes when the model cannot be traced by torch.fx or a cache exceeds the
            budget. Used with ``target_source="pruned"``.
        cache_budget_bytes: Memory the caches may take (None: 40 % of the free device
            memory, or of the available RAM on a CPU).
        moments_dtype: dtype of each calibration batch's products X^T X and Y^T X:
            ``"float32"`` (default) or ``"float64"``. Means, centring sums and the
            accumulation over batches are float64 either way (:class:`pruning.moments.Moments`).
            Measured: the same widths, iteration counts and held-out errors (5-6 digits) on
            the whole VGG-16 pass and in 12/12 LeNet-5 runs, with 29 % less time for the
            moments on a CPU (benchmarks/moments_dtype.py, benchmarks/vgg_pass.py); on GPUs
            without fast float64 the difference is far larger.
        cost_exponent: Cost-aware strengths (:mod:`pruning.cost`): each unit's eps_L2 is
            multiplied by ``(channel cost / geometric mean) ** cost_exponent``, the cost of
            a channel being the ``cost_currency`` it removes in the consumer and its
            producer(s). 0 (default): every layer alike (measured in
            docs/pruning-engine-notes.md).
        cost_currency: ``"macs"``, ``"params"`` or ``"latency"`` (each layer timed alone on
            the model's device at batch 1 and the current thread count, pruning.cost).
    """

    regression: RegressionConfig = field(default_factory=RegressionConfig)
    layer_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    calib_positions_per_image: int | None = 10
    heldout_fraction: float = 0.1
    target_source: Literal["pruned", "original"] = "pruned"
    residual: Literal["inner", "coupled"] = "inner"
    min_channels: int = 1
    recalibrate_bn: bool = True
    layers: list[str] | None = None
    order: Literal["front_to_back", "back_to_front"] = "front_to_back"
    device: str = "auto"
    progress: bool = True
    seed: int = 0
    max_features: int = 16384
    max_batches: int | None = None
    cache_activations: bool = True
    cache_budget_bytes: int | None = None
    moments_dtype: Literal["float64", "float32"] = "float32"
    cost_exponent: float = 0.0
    cost_currency: Literal["macs", "params", "latency"] = "macs"

    def __post_init__(self) -> None:
        if not math.isfinite(self.cost_exponent):
            raise ValueError(f"SparsifyConfig.cost_exponent must be finite, got {self.cost_exponent}")
        if self.cost_currency not in ("macs", "params", "latency"):
            raise ValueError(f"SparsifyConfig.cost_currency: unknown {self.cost_currency!r}")
        if self.moments_dtype not in ("float64", "float32"):
            raise ValueError(f"SparsifyConfig.moments_dtype: unknown {self.moments_dtype!r}")
        if self.target_source not in ("pruned", "original"):
            raise ValueError(f"SparsifyConfig.target_source: unknown {self.target_source!r}")
        if self.residual not in ("inner", "coupled"):
            raise ValueError(f"SparsifyConfig.residual: unknown {self.residual!r}")
        if self.order not in ("front_to_back", "back_to_front"):
            raise ValueError(f"SparsifyConfig.order: unknown {self.order!r}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"SparsifyConfig.heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.min_channels < 1:
            raise ValueError(f"SparsifyConfig.min_channels must be >= 1, got {self.min_channels}")
        if self.calib_positions_per_image is not None and self.calib_positions_per_image < 1:
            raise ValueError("SparsifyConfig.calib_positions_per_image must be >= 1 or None")
        allowed = {f.name for f in dataclasses.fields(RegressionConfig)} | set(_OVERRIDE_EXTRA_KEYS)
        for name, over in self.layer_overrides.items():
            bad = sorted(set(over) - allowed)
            if bad:
                raise ValueError(
                    f"SparsifyConfig.layer_overrides[{name!r}]: unknown key(s) {bad}; "
                    f"allowed: {sorted(allowed)}"
                )
            ratio = over.get("keep_ratio")
            if ratio is not None and not 0.0 < float(ratio) <= 1.0:
                raise ValueError(
                    f"SparsifyConfig.layer_overrides[{name!r}].keep_ratio must be in (0, 1]"
                )


@dataclass
class LayerReport:
    """What happened to one consumer layer.

    Attributes:
        layer: Consumer name.
        producer: Producer name(s), comma-separated.
        kept: Input channels kept.
        total: Input channels before.
        kept_indices: Kept channels, numbered as the layer's inputs were when it was pruned.
        sorted_w: Channel weights w, largest first (empty when no regression ran).
        gap: min kept w / max dropped w (inf: nothing dropped; nan: no regression).
        gap_flag: True when ``gap < 10``: the selection is unreliable.
        rel_error_train: Relative reconstruction error of Y on the fitting samples.
        rel_error_heldout: The same on the held-out samples (nan if none).
        iterations: Solver iterations.
        seconds: Wall time for the layer (data collection, solve, surgery).
        skipped_reason: Why the layer was left alone (None if it was processed).
        coupled_with: Other consumers that shared this layer's w (``coupled`` mode).
        converged: Whether the solver met its tolerance.
        samples: Fitting samples T (held-out excluded).
        features: Regression features d = C * k.
        intercept: Where the refitted intercept went (``bias``, ``bn:<name>``, ...).
    """

    layer: str
    producer: str
    kept: int
    total: int
    kept_indices: list[int] = field(default_factory=list)
    sorted_w: list[float] = field(default_factory=list)
    gap: float = math.nan
    gap_flag: bool = False
    rel_error_train: float = math.nan
    rel_error_heldout: float = math.nan
    iterations: int = 0
    seconds: float = 0.0
    skipped_reason: str | None = None
    coupled_with: list[str] = field(default_factory=list)
    converged: bool = True
    samples: int = 0
    features: int = 0
    intercept: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (non-finite floats become None)."""
        out = dataclasses.asdict(self)
        for key, val in out.items():
            if isinstance(val, float) and not math.isfinite(val):
                out[key] = None
        return out


@dataclass
class SparsifyResult:
    """The pruned model and what was done to it.

    Attributes:
        model: The pruned copy (channels physically removed).
        report: One LayerReport per consumer visited, in processing order.
        before: ``{"params": ..., "macs": ...}`` of the input model (MACs per input sample
            of conv + linear layers).
        after: The same for the pruned model.
        engine: How the data were gathered: ``batches_cached``, ``reference_cached`` (Y
            of all layers from one pass of the original network), ``activations_cached``
            (torch.fx resumption available), ``resumed`` (layer inputs computed from a
            cached activation instead of the network input), ``loader_passes``.
        budget: With a budget target (``sparsify(..., target_macs=...)``): the metric, the
            target (as given, absolute and as a ratio of the original), what was reached,
            whether it is within 2 %, the granularity step, the widths and the seconds of
            each phase (:mod:`pruning.budget`). None without a target.
    """

    model: nn.Module
    report: list[LayerReport]
    before: dict[str, Any]
    after: dict[str, Any]
    engine: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] | None = None


# ---------------------------------------------------------------------- helpers


def _batch_inputs(batch: Any) -> Tensor:
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


def _iter_inputs(loader: Iterable, device: torch.device, max_batches: int | None):
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        yield _batch_inputs(batch).to(device)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


class _StopForward(Exception):
    """Raised from a hook once everything wanted from a forward pass was captured."""


@timed("forward.{want}")
def _capture(
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


def _nbytes_of(t: Tensor) -> int:
    return int(t.numel()) * t.element_size()


@timed("checks")
def _check_finite(t: Tensor, layer: str, what: str, batch: int) -> None:
    if not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).sum())
        raise NonFiniteActivationError(
            f"layer {layer!r}: {n_bad} non-finite (NaN/Inf) values in its {what} "
            f"(calibration batch {batch}); fix the model or data before pruning"
        )


def _snapshot_modes(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def _restore_modes(model: nn.Module, modes: Mapping[str, bool]) -> None:
    for name, m in model.named_modules():
        if name in modes:
            m.train(modes[name])


@timed("bn_recalibration")
def recalibrate_batchnorm(
    model: nn.Module,
    loader: Iterable,
    *,
    device: torch.device | str | None = None,
    max_batches: int | None = None,
) -> int:
    """Re-estimate every BatchNorm's running mean/var on ``loader`` (in place).

    Statistics are reset and accumulated as a cumulative average (``momentum=None``), with
    only the BatchNorms in train mode (dropout etc. stay in eval) and no gradients.

    Returns:
        The number of BatchNorm layers recalibrated.
    """
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    dev = torch.device(device) if device is not None else _model_device(model)
    modes = _snapshot_modes(model)
    momenta = [bn.momentum for bn in bns]
    try:
        model.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        with torch.no_grad():
            for x in _iter_inputs(loader, dev, max_batches):
                model(x)
    finally:
        for bn, mom in zip(bns, momenta, strict=True):
            bn.momentum = mom
        _restore_modes(model, modes)
    return len(bns)


# ---------------------------------------------------------------------- cost counting


@timed("measure")
def _measure(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    try:  # the project's counters (pruning/measure.py), when present
        from pruning.measure import count_macs, count_params, prunable_params
    except ImportError:
        return {"params": _count_params(model), "macs": _count_macs(model, input_shape)}
    return {"params": int(count_params(model)),
            "prunable_params": int(prunable_params(model)),
            "macs": int(count_macs(model, input_shape))}


def _count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of Conv2d and Linear layers for one input of ``input_shape`` (C, H, W)."""
    total = [0]

    def hook(mod: nn.Module, _inp, out: Tensor) -> None:
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            per_out = (mod.in_channels // mod.groups) * kh * kw
            total[0] += int(out[0].numel()) * per_out
        elif isinstance(mod, nn.Linear):
            total[0] += int(out[0].numel()) * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    modes = _snapshot_modes(model)
    dev = _model_device(model)
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=dev))
    finally:
        for h in handles:
            h.remove()
        _restore_modes(model, modes)
    return total[0]


# ---------------------------------------------------------------------- the engine


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


@dataclass
class _Selection:
    """Outcome of choosing channels for one unit (one consumer, or a coupled set)."""

    keep: Tensor
    params: list[tuple[Tensor, Tensor]] | None  # per member (weight, bias); None: no refit
    w: Tensor | None = None
    gap: float = math.nan
    iterations: int = 0
    converged: bool = True


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
        self.loader = loader
        want = _model_device(model) if config.device == "auto" else torch.device(config.device)
        self.device = want
        self.caller_modes = _snapshot_modes(model)
        # The original network gives Y; the caller's model is used when it is already on the
        # right device (hooks are removed and modes restored, nothing else is touched).
        self.reference = model if _model_device(model) == want else copy.deepcopy(model).to(want)
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
        self.ref_modules = dict(self.reference.named_modules())
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
        # Consumers that will be regressed (set by _run before the first unit), and the
        # activation caches, built on the first collect (pruning.activations).
        self.planned: list[tuple[str, int]] = []  # (consumer, unit id) in processing order
        self.loader_passes = 0
        self._caches_ready = False
        self.batches: list[Tensor] | None = None
        self.ref_cache: ReferenceOutputs | None = None
        self.act_cache: PrunedActivations | None = None
        # (batches, reference outputs) of an earlier pass over the same model and data
        # (pruning.budget's plan pass), used instead of reading and running them again.
        self.preset: tuple[list[Tensor], ReferenceOutputs] | None = None

    def close(self) -> None:
        self.batches = None
        self.ref_cache = None
        self.act_cache = None
        _restore_modes(self.reference, self.caller_modes)
        _restore_modes(self.pruned, self.caller_modes)

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

    # -- data -------------------------------------------------------------------------

    def _in_index(self, consumer: Consumer) -> Tensor:
        return self.out_index[consumer.producers[0]]

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
            budget -= sum(_nbytes_of(b) for b in self.batches)
            budget -= sum(r.y.numel() * r.y.element_size()
                          for rows in self.ref_cache.rows.values() for r in rows)
            acts = PrunedActivations(self.pruned, [c.name for c in self.consumers],
                                     len(self.batches), max(budget, 0))
            self.act_cache = acts if acts.enabled else None
            return
        self.loader_passes += 1
        cal = CalibrationBatches(self.loader, _batch_inputs, self.device, cfg.max_batches,
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
            heldout_fraction=cfg.heldout_fraction, seed=cfg.seed, stream=stream, budget=budget,
            check=lambda name, y, b: _check_finite(y, name, "reference outputs", b))
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

    def _inputs(self) -> Iterable[Tensor]:
        if self.batches is not None:
            return iter(self.batches)
        assert self.loader is not None
        self.loader_passes += 1
        return _iter_inputs(self.loader, self.device, self.config.max_batches)

    def info(self) -> dict[str, Any]:
        return {"batches_cached": self.batches is not None,
                "reference_cached": bool(self.ref_cache is not None and self.ref_cache.enabled),
                "activations_cached": self.act_cache is not None,
                "resumed": self.act_cache.resumed if self.act_cache is not None else 0,
                "loader_passes": self.loader_passes}

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
        for b, x in enumerate(self._inputs()):
            xs = _capture(x_source, x, x_mods, want="input")
            ys = _capture(self.reference, x, y_mods, want="output")
            for j, c in enumerate(unit):
                A, Yfull = xs[j], ys[j]
                _check_finite(A, c.name, "input activations", b)
                _check_finite(Yfull, c.name, "reference outputs", b)
                out_idx = self.out_index[c.name].to(Yfull.device)
                if x_source is self.reference:
                    A = self._select_inputs(A, c)
                if isinstance(c.module, nn.Conv2d):
                    X, index = conv_patches(
                        A, c.module, positions_per_image=cfg.calib_positions_per_image,
                        generator=gen)
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
                xs = _capture(self.pruned, x, x_mods, want="input")
            for j, c in enumerate(unit):
                A = xs[j]
                _check_finite(A, c.name, "input activations", b)
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
        idx = self._in_index(c).to(A.device)
        if c.kind == "conv":
            return A.index_select(1, idx)
        cols = feature_columns(idx, c.features_per_channel)
        return A.reshape(-1, A.shape[-1]).index_select(1, cols)

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
        over: dict[str, Any] = {}
        for c in unit:
            over.update(self.config.layer_overrides.get(c.name, {}))
        factor = self.strength.get(unit[0].name, 1.0)
        if factor != 1.0:
            over["eps_L2"] = float(over.get("eps_L2", self.config.regression.eps_L2)) * factor
        C = unit[0].num_channels
        min_ch = min(max(self.config.min_channels, self.config.regression.min_channels), C)
        ratio = over.pop("keep_ratio", None)
        if ratio is not None:
            over["top_k"] = round(float(ratio) * C)
        if over.get("top_k") is not None:
            over["top_k"] = int(min(max(int(over["top_k"]), min_ch), C))
        over.setdefault("min_channels", min_ch)
        over["min_channels"] = min(max(int(over["min_channels"]), 1), C)
        return dataclasses.replace(self.config.regression, **over)

    def select_entropic(self, unit: list[Consumer], train: list[Moments]) -> _Selection:
        rcfg = self.regression_config(unit)
        if len(unit) == 1:
            res = entropic_regression(train[0], rcfg)
            params = [(res.weight, res.bias)]
        else:
            stacked, scales = _stack_moments(train)
            res = entropic_regression(stacked, rcfg)
            params = _split_stacked(res.weight, res.bias, res.keep, train, scales)
        return _Selection(keep=res.keep, params=params, w=res.w, gap=res.gap,
                          iterations=res.iterations, converged=res.converged)

    # -- surgery ----------------------------------------------------------------------

    def apply(self, unit: list[Consumer], sel: _Selection) -> list[str]:
        """Remove the dropped channels and write the refitted parameters."""
        head = unit[0]
        keep = sel.keep.detach().to("cpu", torch.long)
        dropped = len(keep) < head.num_channels
        if not dropped and not self.changed:
            # Nothing removed and the network upstream is untouched: the layer's own weights
            # are exact already, a refit could only add rounding.
            return ["unchanged"] * len(unit)
        before = module_state(self.pruned) if self.act_cache is not None else None
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
        if self.act_cache is not None and before is not None:
            refitted = [c.name for c in unit] + [c.bn_after for c in unit if c.bn_after]
            self.act_cache.after_surgery(
                [c.name for c in unit], changed_modules(before, module_state(self.pruned)),
                refitted, keep, {c.name: c.features_per_channel for c in unit})
        return where


def _stack_moments(parts: list[Moments]) -> tuple[Moments, list[float]]:
    """One regression over several consumers of the same C channels, sharing w.

    Consumer j has features (c, p), p < k_j, and outputs Y_j. The stacked problem has
    channel-major features (c, j, p), k = sum_j k_j per channel, and outputs (Y_1, Y_2, ...);
    its covariance is block-diagonal across consumers (they see different tensors, e.g. the
    residual stream at different depths), so the objective is the sum of the consumers'
    objectives with one w. Each Y_j is scaled to mean variance 1 first so that no consumer
    dominates the fit by its output scale; the scales undo that on the weights.
    """
    C = parts[0].num_channels
    ks = [p.group_size for p in parts]
    ms = [p.num_outputs for p in parts]
    k_tot, m_tot = sum(ks), sum(ms)
    dev = parts[0].mu_x.device
    mu_x = torch.zeros(C * k_tot, dtype=torch.float64, device=dev)
    mu_y = torch.zeros(m_tot, dtype=torch.float64, device=dev)
    S = torch.zeros(C * k_tot, C * k_tot, dtype=torch.float64, device=dev)
    R = torch.zeros(m_tot, C * k_tot, dtype=torch.float64, device=dev)
    V = torch.zeros(m_tot, dtype=torch.float64, device=dev)
    scales = []
    off_k = off_m = 0
    for p, k, m in zip(parts, ks, ms, strict=True):
        cols = _stacked_columns(C, k_tot, off_k, k, dev)
        rows = torch.arange(off_m, off_m + m, device=dev)
        mv = float(p.V.mean())
        s = math.sqrt(mv) if mv > 0 else 1.0
        scales.append(s)
        mu_x[cols] = p.mu_x
        S[cols.unsqueeze(1), cols.unsqueeze(0)] = p.S
        R[rows.unsqueeze(1), cols.unsqueeze(0)] = p.R / s
        mu_y[rows] = p.mu_y / s
        V[rows] = p.V / s**2
        off_k += k
        off_m += m
    n = min(p.n for p in parts)
    out = Moments.from_statistics(n=n, mu_x=mu_x, mu_y=mu_y, S=S, R=R, V=V,
                                  num_channels=C, group_size=k_tot)
    return out, scales


def _stacked_columns(C: int, k_tot: int, offset: int, k: int, dev: torch.device) -> Tensor:
    base = torch.arange(C, device=dev).unsqueeze(1) * k_tot + offset
    return (base + torch.arange(k, device=dev).unsqueeze(0)).reshape(-1)


def _split_stacked(
    weight: Tensor, bias: Tensor, keep: Tensor, parts: list[Moments], scales: list[float]
) -> list[tuple[Tensor, Tensor]]:
    K = int(keep.numel())
    k_tot = sum(p.group_size for p in parts)
    out = []
    off_k = off_m = 0
    for p, s in zip(parts, scales, strict=True):
        k, m = p.group_size, p.num_outputs
        cols = _stacked_columns(K, k_tot, off_k, k, weight.device)
        w_j = weight[off_m:off_m + m][:, cols] * s
        # The refit is block-diagonal up to rounding; recompute the intercept from this
        # member's own means so that cross-block residue cannot leak into it.
        b_j = p.mu_y - w_j @ p.mu_x[feature_columns(keep.to(p.mu_x.device), k)]
        out.append((w_j, b_j))
        off_k += k
        off_m += m
    del bias
    return out


# ---------------------------------------------------------------------- public API


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]sparsify[/] {task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), disable=not enabled)


def _first_batch(loader: Iterable) -> Tensor:
    for batch in loader:
        return _batch_inputs(batch)
    raise ValueError("calibration loader is empty")


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
    select: Callable[[_Engine, list[Consumer], list[Moments] | None], _Selection],
    needs_data: Callable[[list[Consumer]], bool],
    example: Tensor,
    *,
    forward_order: bool = False,
    strict: bool = False,
    share: dict[str, Any] | None = None,
) -> SparsifyResult:
    unknown = sorted(config.layer_overrides)
    engine = _Engine(model, loader, config, example)
    if share is not None and share.get("ref_cache") is not None:
        engine.preset = (share["batches"], share["ref_cache"])
    try:
        bad = [n for n in unknown if n not in engine.by_name]
        if bad:
            raise ValueError(f"layer_overrides for unknown consumer(s) {bad}; prunable "
                             f"consumers are {[c.name for c in engine.consumers]}")
        input_shape = tuple(example.shape[1:])
        before = _measure(engine.pruned, input_shape)
        schedule = _schedule(engine, schedule_names, config.order, forward_order=forward_order)
        # (position in the schedule, consumer, its unit; None once an earlier unit covered it)
        steps: list[tuple[int, Consumer, list[Consumer] | None]] = []
        done: set[str] = set()
        for unit_id, consumer in enumerate(schedule):
            unit = None if consumer.name in done else engine.unit_of(consumer)
            if unit is not None:
                done.update(c.name for c in unit)
                if engine.skip_reason(unit) is None and needs_data(unit):
                    engine.planned.extend((c.name, unit_id) for c in unit)
            steps.append((unit_id, consumer, unit))
        reports: list[LayerReport] = []
        with _progress(config.progress) as progress:
            task = progress.add_task("", total=len(schedule))
            for unit_id, consumer, unit in steps:
                progress.update(task, description=consumer.name)
                if unit is None:
                    progress.advance(task)
                    continue
                reports.extend(_process_unit(engine, unit, unit_id, select, needs_data,
                                             strict=strict))
                for r in reports[-len(unit):]:
                    line = _summary(r)
                    log.info(line)
                    if config.progress:
                        progress.console.print(line)
                progress.advance(task)
        if engine.changed and config.recalibrate_bn and loader is not None:
            engine.loader_passes += engine.batches is None
            recalibrate_batchnorm(engine.pruned,
                                  engine.batches if engine.batches is not None else loader,
                                  device=engine.device, max_batches=config.max_batches)
        after = _measure(engine.pruned, input_shape)
        info = engine.info()
        if share is not None and engine.batches is not None and engine.ref_cache is not None:
            share["batches"], share["ref_cache"] = engine.batches, engine.ref_cache
    finally:
        engine.close()
    return SparsifyResult(model=engine.pruned, report=reports, before=before, after=after,
                          engine=info)


@timed("unit")
def _process_unit(
    engine: _Engine,
    unit: list[Consumer],
    unit_id: int,
    select: Callable[[_Engine, list[Consumer], list[Moments] | None], _Selection],
    needs_data: Callable[[list[Consumer]], bool],
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
    if needs_data(unit):
        train, held = engine.collect(unit, unit_id)
    sel = select(engine, unit, train)
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


def _summary(r: LayerReport) -> str:
    if r.skipped_reason is not None:
        return f"{r.layer}: skipped ({r.skipped_reason})"
    flag = " [unreliable gap]" if r.gap_flag else ""
    return (f"{r.layer}: kept {r.kept}/{r.total}, gap {r.gap:.3g}{flag}, rel. error "
            f"train {r.rel_error_train:.3g} / held-out {r.rel_error_heldout:.3g}, "
            f"{r.iterations} it, {r.seconds:.2f} s")


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
    example = _first_batch(calib_loader)[:1]
    check_input_fits(model, example.to(_model_device(model)))
    if target is not None:
        return sparsify_to_budget(model, calib_loader, config, target, example)

    def select(engine: _Engine, unit: list[Consumer], train: list[Moments] | None) -> _Selection:
        assert train is not None
        return engine.select_entropic(unit, train)

    return _run(model, calib_loader, config, config.layers, select, lambda _u: True, example)


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
    compared at equal widths.

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
    if calib_loader is not None:
        calib_loader = reiterable(calib_loader, config.max_batches)
        example = _first_batch(calib_loader)[:1]
    elif example_inputs is not None:
        example = example_inputs[:1]
    elif getattr(model, "arch_input_shape", None) is not None:
        example = torch.randn(1, *model.arch_input_shape)  # type: ignore[misc]
    else:
        raise ValueError("prune_to_widths: pass calib_loader or example_inputs for tracing")
    if refit and calib_loader is None:
        raise ValueError("prune_to_widths: refit=True needs a calib_loader")
    check_input_fits(model, example.to(_model_device(model)),
                     what="calibration batch" if calib_loader is not None else "example_inputs")
    keep_t = {n: torch.as_tensor(v, dtype=torch.long).reshape(-1) for n, v in keep.items()}
    ridge = config.regression.refit_ridge

    def select(engine: _Engine, unit: list[Consumer], train: list[Moments] | None) -> _Selection:
        given = {c.name: torch.sort(torch.unique(keep_t[c.name])).values
                 for c in unit if c.name in keep_t}
        k = next(iter(given.values()))
        if any(not torch.equal(k, other) for other in given.values()):
            raise ValueError(f"prune_to_widths: coupled layers {sorted(given)} share their input "
                             "channels but got different keep sets")
        n_ch = unit[0].num_channels
        if k.numel() == 0 or int(k.min()) < 0 or int(k.max()) >= n_ch:
            raise ValueError(f"prune_to_widths: keep for {unit[0].name!r} must be non-empty "
                             f"indices in [0, {n_ch})")
        params = None
        if train is not None:
            dev = train[0].mu_x.device
            params = [_refit(m, k.to(dev), ridge=ridge) for m in train]
        return _Selection(keep=k, params=params)

    cfg = dataclasses.replace(config, layers=None, layer_overrides={})
    if not refit:  # no regression data: the size limit on d does not apply
        cfg = dataclasses.replace(cfg, max_features=sys.maxsize)
    return _run(model, calib_loader, cfg, list(keep_t), select,
                lambda _u: bool(refit) and calib_loader is not None, example,
                forward_order=True, strict=True, share=_share)


def _refit(moments: Moments, keep: Tensor, *, ridge: float) -> tuple[Tensor, Tensor]:
    return refit(moments, keep, ridge=ridge)


def l1_channel_ranking(
    model: nn.Module,
    consumer: str,
    *,
    example_inputs: Tensor | None = None,
    source: Literal["producer", "consumer"] = "producer",
) -> Tensor:
    """Input channels of ``consumer`` ordered by L1 magnitude, largest first.

    Args:
        model: The network.
        consumer: Consumer layer name.
        example_inputs: A batch for tracing (default: ``model.arch_input_shape``).
        source: ``"producer"`` (Li et al. 2017): the L1 norm of each producer filter, summed
            over coupled producers; ``"consumer"``: the L1 norm of the consumer's weights
            reading each channel.

    Returns:
        LongTensor (C,) of channel indices; ``ranking[:k]`` are the k largest.
    """
    if example_inputs is None:
        shape = getattr(model, "arch_input_shape", None)
        if shape is None:
            raise ValueError("l1_channel_ranking: pass example_inputs (model has no arch_input_shape)")
        example_inputs = torch.randn(1, *shape)
    dev = _model_device(model)
    modes = _snapshot_modes(model)
    try:
        dg = build_graph(model, example_inputs.to(dev))
        found = {c.name: c for c in discover_consumers(model, dg, example_inputs.to(dev))}
    finally:
        _restore_modes(model, modes)
    if consumer not in found:
        raise ValueError(f"unknown consumer {consumer!r}; prunable consumers are {sorted(found)}")
    c = found[consumer]
    with torch.no_grad():
        if source == "consumer":
            w = c.module.weight.detach().abs()
            if c.kind == "conv":
                score = w.sum(dim=(0, 2, 3))
            else:
                score = w.sum(0).view(c.num_channels, c.features_per_channel).sum(1)
        elif source == "producer":
            score = torch.zeros(c.num_channels, device=dev)
            for p in c.producers:
                producer = model.get_submodule(p)
                assert isinstance(producer, (nn.Conv2d, nn.Linear))
                pw = producer.weight.detach().abs()
                score = score + pw.reshape(pw.shape[0], -1).sum(1).to(score.device)
        else:
            raise ValueError(f"l1_channel_ranking: unknown source {source!r}")
    return torch.sort(score.cpu(), descending=True, stable=True).indices
