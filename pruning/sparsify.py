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
(:mod:`pruning.surgery`), BatchNorm recalibration (:mod:`pruning.bn`) and the pass itself as
a public object (:class:`pruning.engine.Pass`); this module holds the entry points:
:func:`sparsify` (entropic selection; to a budget, the greedy plan's allocation and
ranking by default, :mod:`pruning.budget`), :func:`prune_to_widths`
(given channels) and :func:`prune_with` (any :class:`pruning.criteria.Criterion`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from pruning.budget import DEFAULT_PLAN, Plan, sparsify_to_budget
from pruning.capture import first_batch, model_device
from pruning.config import SparsifyConfig, SparsifyResult
from pruning.criteria import Criterion, Entropic
from pruning.currency import Budget, BudgetError
from pruning.engine import CalibCache, Pass, run_given
from pruning.inputs import check_input_fits, reiterable

__all__ = ["prune_to_widths", "prune_with", "sparsify"]

log = logging.getLogger(__name__)


def sparsify(
    model: nn.Module,
    calib_loader: Iterable,
    config: SparsifyConfig | None = None,
    *,
    budget: Budget | None = None,
    target_macs: float | None = None,
    target_params: float | None = None,
    selection: Callable[[Mapping[str, int]], Criterion] | Literal["plan"] | None = None,
    plan: Plan | None = None,
    cache: CalibCache | None = None,
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
        budget: A :class:`pruning.Budget` (a currency - ``MACs()``, ``Params()``,
            ``Latency(device, batch_size, threads)`` or one of your own - and a value: a
            ratio of the original in (0, 1] or an absolute amount). The widths are then
            allocated across layers from per-layer error-vs-width curves
            (:mod:`pruning.budget`); ``eps_L2`` only ranks the channels. At most one budget.
        target_macs: Shorthand for ``budget=Budget(MACs(), target_macs)``: MACs per input
            sample (conv + linear).
        target_params: Shorthand for ``budget=Budget(Params(), target_params)``: all
            parameters, BN included.
        selection: With a target only: the criterion class (or factory from ``{consumer:
            width}``) that chooses each layer's channels at the allocated widths in the final
            pass, e.g. ``pruning.GreedyReconstruction`` or ``pruning.LassoSelection`` (the
            papers' selections with the same allocation and refit); ``"plan"`` or None (the
            default): the plan pass's own ranking (a refit only).
        plan: With a target only: how the plan pass ranks each layer's channels for the
            allocation: ``"greedy"`` (the default: greedy forward selection on the
            least-squares error, :class:`pruning.budget.GreedyPlan`) or ``"entropic"`` (the
            entropic regression's weights). Without a target the pass is always entropic.
        cache: A :class:`pruning.CalibCache` to keep the calibration batches and the
            original network's outputs in, and to reuse them from on the next call with the
            same model, data and sampling settings (a search's trials: one read of the data
            and one reference pass for all of them). Filled for another model or other
            settings, it is refilled, never read.

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
        BudgetError: A malformed budget (<= 0, two at once) or one that cannot be reached
            with every layer at ``min_channels``; raised before any data pass, naming the
            argument.

    Reference: Barisin & Horenko, arXiv:2404.04734 (Neural Computation 2025).
    """
    config = config or SparsifyConfig()
    if budget is not None and not isinstance(budget, Budget):
        raise TypeError(f"sparsify: budget= takes a pruning.Budget (e.g. Budget(MACs(), 0.5) or "
                        f"Budget(Latency('cpu'), 4.0)), got {type(budget).__name__}; "
                        "target_macs= / target_params= take a number")
    shorthand = Budget.from_targets(target_macs=target_macs, target_params=target_params)
    if budget is not None and shorthand is not None:
        raise BudgetError(f"sparsify: budget= and {shorthand.field_name}= both given; set one")
    target = budget if budget is not None else shorthand
    calib_loader = reiterable(calib_loader, config.max_batches)
    example = first_batch(calib_loader)[:1]
    check_input_fits(model, example.to(model_device(model)))
    if (selection is not None or plan is not None) and target is None:
        raise ValueError("sparsify: selection= / plan= act on a budget's allocation; give "
                         "a budget (budget=, target_macs or target_params) with it")
    if target is not None:
        return sparsify_to_budget(model, calib_loader, config, target, example,
                                  selection=None if selection == "plan" else selection,
                                  plan=plan or DEFAULT_PLAN, cache=cache)
    return Pass(model, calib_loader, config, example).run(Entropic(), config.layers,
                                                           cache=cache)


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
    return run_given(model, keep, calib_loader, config, example, refit=refit)


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
    pass_ = Pass(model, calib_loader, config, example)
    if layers is not None:
        return pass_.run(criterion, list(layers), forward_order=True, strict=True)
    return pass_.run(criterion, config.layers)
