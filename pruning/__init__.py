"""Entropic sparsification of trained CNNs: moments, regression, surgery, whole-net pass.

Public API (torch only; nothing here imports ``nas`` or ``search_spaces``)::

    sparsify(model, calib_loader, SparsifyConfig(...)) -> SparsifyResult(model, report, ...)
    sparsify(model, calib_loader, target_macs=0.5)      # a budget: greedy plan by default,
                                                        # plan="entropic" for the entropic one
    prune_to_widths(model, {consumer: keep_idxs}, calib_loader, refit=True)   # baselines
    l1_channel_ranking(model, consumer)
    prune_with(model, criterion, calib_loader)          # Entropic / GivenChannels / L1Magnitude /
                                                        # GreedyReconstruction / LassoSelection
    Pass(model, calib_loader, config, example).run(criterion)   # the pass as an object
    CostModel(model, input_shape, units, "macs").cost(widths)   # the width cost model
    removable_blocks(model, example); drop_blocks(model, names)  # depth: residual blocks
    entropic_regression(Moments, RegressionConfig) -> RegressionResult
    count_params, count_macs, prunable_params, ...                               # measure

Submodules: ``config`` (SparsifyConfig, reports), ``capture`` (data collection),
``patches`` (sampled conv patches), ``moments`` (streaming statistics), ``regression`` (the
solver), ``criteria`` (channel selection), ``stacking`` (coupled moments), ``surgery``
(channel removal on Torch-Pruning's dependency graph), ``bn`` (BatchNorm recalibration),
``engine`` (the layer-by-layer pass, :class:`Pass`), ``sparsify`` (its entry points),
``currency`` (:class:`Budget` and what it is counted in: :class:`MACs`, :class:`Params`,
:class:`Latency`), ``budget`` / ``cost`` (the budgeted pass, cost-aware strengths), ``measure`` (params / MACs / memory / latency).
"""

from __future__ import annotations

from .bn import recalibrate_batchnorm
from .capture import NonFiniteActivationError
from .config import LayerReport, SparsifyConfig, SparsifyResult
from .cost import CostModel, WidthUnit
from .criteria import (
    Criterion,
    Entropic,
    EntropicAt,
    GivenChannels,
    GreedyReconstruction,
    L1Magnitude,
    LassoSelection,
    SameWidths,
    Selection,
    Unit,
    WidthCriterion,
    l1_channel_ranking,
)
from .currency import Budget, BudgetError, Currency, Latency, MACs, Params
from .depth import (
    block_drop_errors,
    drop_blocks,
    dropped_blocks,
    inside_blocks,
    removable_blocks,
)
from .engine import CalibCache, Pass
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
from .sparsify import prune_to_widths, prune_with, sparsify
from .surgery import SurgeryError, UnsupportedLayerError

__all__ = [
    "Budget",
    "BudgetError",
    "Currency",
    "Latency",
    "MACs",
    "Params",
    "CalibCache",
    "CostModel",
    "Criterion",
    "Entropic",
    "EntropicAt",
    "GivenChannels",
    "InputMismatchError",
    "GreedyReconstruction",
    "L1Magnitude",
    "LassoSelection",
    "SameWidths",
    "WidthCriterion",
    "LayerReport",
    "ModelMetrics",
    "Moments",
    "NonFiniteActivationError",
    "Pass",
    "RegressionConfig",
    "RegressionResult",
    "Selection",
    "SparsifyConfig",
    "SparsifyResult",
    "SurgeryError",
    "Unit",
    "UnsupportedLayerError",
    "WidthUnit",
    "block_drop_errors",
    "count_macs",
    "drop_blocks",
    "dropped_blocks",
    "count_params",
    "entropic_regression",
    "fp32_mib",
    "inside_blocks",
    "l1_channel_ranking",
    "layer_macs",
    "measure_latency",
    "prunable_params",
    "prune_to_widths",
    "removable_blocks",
    "prune_with",
    "recalibrate_batchnorm",
    "sparsify",
    "sparsity",
]
