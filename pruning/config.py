"""What a sparsify pass is told and what it tells back: its settings and its report.

- :class:`SparsifyConfig`: the whole-network settings (data, order, residual mode, caches,
  cost-aware strengths) around one :class:`pruning.regression.RegressionConfig` shared by
  all layers, plus per-layer overrides;
- :class:`LayerReport`: what happened to one consumer layer;
- :class:`SparsifyResult`: the pruned copy, the reports and the counts before and after.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from pruning.regression import RegressionConfig

__all__ = ["GAP_FLAG_THRESHOLD", "LayerReport", "SparsifyConfig", "SparsifyResult",
           "layer_setting"]

# gap = min kept w / max dropped w below this marks an unreliable selection (spec section 6).
GAP_FLAG_THRESHOLD = 10.0


@dataclass
class SparsifyConfig:
    """Settings of a whole-network sparsification.

    Attributes:
        regression: Solver and selection settings shared by all layers.
        layer_overrides: Per consumer name, that layer's settings: a whole
            :class:`RegressionConfig` (what a search trial gives), or a dict of its fields
            to change in ``regression`` (``eps_E``, ``eps_L2``, ``tau``, ``top_k``,
            ``keep_ratio`` ...), validated here. In ``coupled`` mode a unit takes the merged
            overrides of its members, in forward order (of a whole RegressionConfig, the
            fields that differ from ``regression``).
        calib_positions_per_image: Output positions sampled per image for conv layers
            (None: all positions). Linear layers use every sample.
        calib_rows_per_feature: Sample more positions where a conv layer needs them: at
            least this many regression rows per feature d = C_in/groups*kh*kw over the
            whole calibration set, held-out rows included (capped at every position;
            ``calib_positions_per_image`` is then the floor; mirrored or otherwise
            augmented calibration images count as images). None: the same count for every
            layer. Few images with many features (late layers) otherwise give fewer rows
            than unknowns (docs/findings.md, calibration size).
        heldout_fraction: Share of samples kept out of the fit for the held-out relative
            reconstruction error.
        refit_ridge_from_heldout: Choose each layer's refit ridge on its held-out rows
            (:func:`pruning.regression.refit_on_heldout`, the smallest of
            ``REFIT_RIDGES`` within 0.1 % of the best held-out error) instead of
            ``regression.refit_ridge``. Needs ``heldout_fraction > 0``; layers that take
            the "shrunk" refit are left as they are.
        target_source: ``"pruned"`` (default): X from the pruned-so-far network, Y from the
            original one. ``"original"``: both from the original network (ablation).
        residual: ``"inner"`` (default): consumers whose input channels are coupled through
            a residual addition (or shared otherwise) are left alone; inside each block the
            channels are pruned. ``"coupled"``: all consumers of a residual-coupled (or
            shared: one producer read by several layers) channel set share one w, fitted
            on their stacked regressions.
        min_channels: Shorthand for ``regression.min_channels`` (None: as there).
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
            moments on a CPU (docs/results.md: moments_dtype, vgg_pass); on GPUs
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
    layer_overrides: dict[str, RegressionConfig | dict[str, Any]] = field(default_factory=dict)
    calib_positions_per_image: int | None = 10
    calib_rows_per_feature: float | None = None
    heldout_fraction: float = 0.1
    refit_ridge_from_heldout: bool = False
    target_source: Literal["pruned", "original"] = "pruned"
    residual: Literal["inner", "coupled"] = "inner"
    min_channels: int | None = None
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
        if self.calib_positions_per_image is not None and self.calib_positions_per_image < 1:
            raise ValueError("SparsifyConfig.calib_positions_per_image must be >= 1 or None")
        if self.refit_ridge_from_heldout and self.heldout_fraction <= 0:
            raise ValueError("SparsifyConfig.refit_ridge_from_heldout needs heldout_fraction > 0")
        if self.calib_rows_per_feature is not None and not (
                math.isfinite(self.calib_rows_per_feature) and self.calib_rows_per_feature > 0):
            raise ValueError("SparsifyConfig.calib_rows_per_feature must be > 0 or None, "
                             f"got {self.calib_rows_per_feature}")
        if self.min_channels is not None and self.min_channels != self.regression.min_channels:
            self.regression = _replace(self.regression, "SparsifyConfig.min_channels",
                                       min_channels=self.min_channels)
        allowed = {f.name for f in dataclasses.fields(RegressionConfig)}
        for name, over in self.layer_overrides.items():
            where = f"SparsifyConfig.layer_overrides[{name!r}]"
            if isinstance(over, RegressionConfig):
                continue
            if not isinstance(over, dict):
                raise TypeError(f"{where}: expected a RegressionConfig or a dict of its "
                                f"fields, got {type(over).__name__}")
            bad = sorted(set(over) - allowed)
            if bad:
                raise ValueError(f"{where}: unknown key(s) {bad}; allowed: {sorted(allowed)}")
            _replace(self.regression, where, **over)  # validated once, here


def _replace(setting: RegressionConfig, where: str, **changes: Any) -> RegressionConfig:
    """``dataclasses.replace`` whose error names ``where`` (the field the changes came from)."""
    try:
        return dataclasses.replace(setting, **changes)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def layer_setting(config: SparsifyConfig, names: Sequence[str]) -> RegressionConfig:
    """The regression settings of a unit whose consumers are ``names`` (forward order).

    ``config.regression`` with each member's override applied in turn (before
    :meth:`RegressionConfig.for_layer`, which needs the layer's channel count).
    """
    base = setting = config.regression
    for name in names:
        over = config.layer_overrides.get(name)
        if over is None:
            continue
        if isinstance(over, RegressionConfig):
            over = {f.name: getattr(over, f.name) for f in dataclasses.fields(over)
                    if getattr(over, f.name) != getattr(base, f.name)}
        setting = dataclasses.replace(setting, **over)
    return setting


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
        refit_ridge: The relative ridge of the refit (nan: no refit ran).
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
    refit_ridge: float = math.nan
    intercept: str = ""

    def summary(self) -> str:
        """One line for the log: kept / total, gap, errors, iterations, seconds."""
        if self.skipped_reason is not None:
            return f"{self.layer}: skipped ({self.skipped_reason})"
        head = f"{self.layer}: kept {self.kept}/{self.total}"
        if not any(math.isfinite(v) for v in (self.gap, self.rel_error_train,
                                               self.rel_error_heldout)):
            return f"{head} (no fit to report: channels given, no refit)"
        flag = " [unreliable gap]" if self.gap_flag else ""
        return (f"{head}, gap {self.gap:.3g}{flag}, rel. "
                f"error train {self.rel_error_train:.3g} / held-out {self.rel_error_heldout:.3g}, "
                f"{self.iterations} it, {self.seconds:.2f} s")

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

