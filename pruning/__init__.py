"""Entropic sparsification of trained CNNs: moments, regression, surgery, whole-net pass.

Public API (torch only; nothing here imports ``nas`` or ``search_spaces``)::

    sparsify(model, calib_loader, SparsifyConfig(...)) -> SparsifyResult(model, report, ...)
    prune_to_widths(model, {consumer: keep_idxs}, calib_loader, refit=True)   # baselines
    l1_channel_ranking(model, consumer)
    entropic_regression(Moments, RegressionConfig) -> RegressionResult
    count_params, count_macs, prunable_params, ...                               # measure

Submodules: ``moments`` (streaming statistics), ``regression`` (the solver), ``surgery``
(channel removal on Torch-Pruning's dependency graph), ``sparsify`` (the layer-by-layer
pass), ``measure`` (params / MACs / memory / latency).
"""

from __future__ import annotations

from .budget import BudgetError
from .inputs import InputMismatchError
from .measure import (
    ModelMetrics,
    count_macs,
    count_params,
    fp32_mib,
    layer_macs,
    measure_latency,
    prunable_params,
    sparsity,
)
from .moments import Moments
from .regression import RegressionConfig, RegressionResult, entropic_regression
from .sparsify import (
    LayerReport,
    NonFiniteActivationError,
    SparsifyConfig,
    SparsifyResult,
    l1_channel_ranking,
    prune_to_widths,
    recalibrate_batchnorm,
    sparsify,
)
from .surgery import SurgeryError, UnsupportedLayerError

__all__ = [
    "BudgetError",
    "InputMismatchError",
    "LayerReport",
    "ModelMetrics",
    "Moments",
    "NonFiniteActivationError",
    "RegressionConfig",
    "RegressionResult",
    "SparsifyConfig",
    "SparsifyResult",
    "SurgeryError",
    "UnsupportedLayerError",
    "count_macs",
    "count_params",
    "entropic_regression",
    "fp32_mib",
    "l1_channel_ranking",
    "layer_macs",
    "measure_latency",
    "prunable_params",
    "prune_to_widths",
    "recalibrate_batchnorm",
    "sparsify",
    "sparsity",
]
