"""Channel-selection criteria: which input channels of a layer the pass keeps.

The layer-by-layer pass (:mod:`pruning.sparsify`) does the same for every criterion: it
collects a unit's regression moments (when the criterion reads them), asks the criterion for
a :class:`Selection`, removes the other channels and writes the refitted weights. A
criterion is an object with one method, like Torch-Pruning's importance objects::

    class Criterion(ABC):
        def needs_data(self, unit) -> bool: ...       # default True
        def select(self, unit: Unit) -> Selection: ...

Built in:

- :class:`Entropic`: the sparse entropic regression (``pruning.sparsify``); keep and
  refitted weights come from the solver, coupled units on their stacked moments;
- :class:`GivenChannels`: channels chosen outside (``pruning.prune_to_widths``), refitted by
  least squares on the same moments or left as they are;
- :class:`L1Magnitude`: the channels of the largest L1 norm (Li et al. 2017) of the
  producer filters (or of the consumer's weights reading them), in the original network.

Run any of them with :func:`pruning.prune_with`; ``tests/test_criteria.py`` holds every one
to the same contract.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from pruning.capture import model_device, restore_modes, snapshot_modes
from pruning.moments import Moments
from pruning.regression import RegressionConfig, entropic_regression, refit
from pruning.stacking import split_stacked, stack_moments
from pruning.surgery import Consumer, build_graph, discover_consumers

__all__ = ["Criterion", "Entropic", "GivenChannels", "L1Magnitude", "Selection", "Unit",
           "l1_channel_ranking"]


@dataclass
class Selection:
    """Outcome of choosing channels for one unit (one consumer, or a coupled set).

    Attributes:
        keep: Kept input channels (sorted, unique, in the unit's current numbering).
        params: Per member consumer, the refitted ``(weight, bias)`` on the kept channels;
            None: the kept weights stay as they are.
        w: The channel weights the choice was made from (reported sorted; None: no solver).
        gap: min kept w / max dropped w (nan without w).
        iterations: Solver iterations.
        converged: Whether the solver met its tolerance.
    """

    keep: Tensor
    params: list[tuple[Tensor, Tensor]] | None
    w: Tensor | None = None
    gap: float = math.nan
    iterations: int = 0
    converged: bool = True


@dataclass(frozen=True)
class Unit:
    """What a criterion sees of one unit.

    Attributes:
        consumers: The unit's consumers (one, or a coupled set in forward order); they read
            the same ``consumers[0].num_channels`` input channels.
        setting: The unit's regression settings (shared ones, the layer's overrides and
            cost-aware strength applied, ``top_k`` / ``min_channels`` resolved for C).
        moments: Per consumer, the fitting moments (X from the pruned-so-far network, Y
            from the original); None when :meth:`Criterion.needs_data` said no.
        reference: The original network.
        channels: Original index of each current input channel (LongTensor (C,)).
    """

    consumers: list[Consumer]
    setting: RegressionConfig
    moments: list[Moments] | None
    reference: nn.Module
    channels: Tensor = field(repr=False)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.consumers]

    @property
    def num_channels(self) -> int:
        return int(self.consumers[0].num_channels)


class Criterion(ABC):
    """Chooses which input channels of a unit stay (see the module docstring)."""

    def needs_data(self, unit: Sequence[Consumer]) -> bool:
        """Whether :meth:`select` reads ``Unit.moments`` (False: no data pass for the unit).

        ``unit`` holds the unit's consumers; an empty one asks whether the criterion reads
        moments for any unit (``prune_with`` asks so before a pass without data).
        """
        return True

    @abstractmethod
    def select(self, unit: Unit) -> Selection:
        """The kept channels of ``unit`` and, optionally, each consumer's new parameters."""


class Entropic(Criterion):
    """Sparse entropic regression of the unit (:func:`pruning.regression.entropic_regression`)."""

    def select(self, unit: Unit) -> Selection:
        if unit.moments is None:
            raise ValueError("Entropic: the unit has no regression moments")
        if len(unit.moments) == 1:
            res = entropic_regression(unit.moments[0], unit.setting)
            params = [(res.weight, res.bias)]
        else:
            stacked, scales = stack_moments(unit.moments)
            res = entropic_regression(stacked, unit.setting)
            params = split_stacked(res.weight, res.bias, res.keep, unit.moments, scales)
        return Selection(keep=res.keep, params=params, w=res.w, gap=res.gap,
                         iterations=res.iterations, converged=res.converged)


def _refit_all(unit: Unit, keep: Tensor) -> list[tuple[Tensor, Tensor]] | None:
    if unit.moments is None:
        return None
    dev = unit.moments[0].mu_x.device
    return [refit(m, keep.to(dev), ridge=unit.setting.refit_ridge) for m in unit.moments]


class GivenChannels(Criterion):
    """Channels chosen outside: consumer name -> kept input-channel indices.

    Args:
        keep: Kept channels per consumer, in the layer's input numbering. A coupled unit
            takes the set of whichever member is named (all named members must agree);
            a unit none of whose members is named keeps every channel.
        refit: Refit the kept weights and bias by least squares on the unit's moments;
            False leaves them as they were (and needs no data).
    """

    def __init__(self, keep: Mapping[str, Tensor | Sequence[int]], *, refit: bool = True) -> None:
        self.keep = {n: torch.as_tensor(v, dtype=torch.long).reshape(-1) for n, v in keep.items()}
        self.refit = bool(refit)

    def needs_data(self, unit: Sequence[Consumer]) -> bool:
        return self.refit

    def select(self, unit: Unit) -> Selection:
        given = {c.name: torch.sort(torch.unique(self.keep[c.name])).values
                 for c in unit.consumers if c.name in self.keep}
        n_ch = unit.num_channels
        if not given:
            return Selection(keep=torch.arange(n_ch), params=_refit_all(unit, torch.arange(n_ch)))
        k = next(iter(given.values()))
        if any(not torch.equal(k, other) for other in given.values()):
            raise ValueError(f"prune_to_widths: coupled layers {sorted(given)} share their input "
                             "channels but got different keep sets")
        if k.numel() == 0 or int(k.min()) < 0 or int(k.max()) >= n_ch:
            raise ValueError(f"prune_to_widths: keep for {unit.consumers[0].name!r} must be "
                             f"non-empty indices in [0, {n_ch})")
        return Selection(keep=k, params=_refit_all(unit, k))


L1Source = Literal["producer", "consumer"]


def _l1_scores(model: nn.Module, c: Consumer, source: L1Source) -> Tensor:
    """L1 magnitude of each input channel of ``c``, from ``model``'s weights (its numbering)."""
    with torch.no_grad():
        if source == "consumer":
            mod = model.get_submodule(c.name)
            assert isinstance(mod, (nn.Conv2d, nn.Linear))
            w = mod.weight.detach().abs()
            if c.kind == "conv":
                return w.sum(dim=(0, 2, 3))
            return w.sum(0).view(-1, c.features_per_channel).sum(1)
        if source == "producer":
            score: Tensor | None = None
            for p in c.producers:
                producer = model.get_submodule(p)
                assert isinstance(producer, (nn.Conv2d, nn.Linear))
                pw = producer.weight.detach().abs()
                if score is None:
                    score = torch.zeros(pw.shape[0], device=pw.device)
                score = score + pw.reshape(pw.shape[0], -1).sum(1).to(score.device)
            assert score is not None
            return score
    raise ValueError(f"l1_channel_ranking: unknown source {source!r}")


class L1Magnitude(Criterion):
    """Keep the channels of largest L1 norm in the original network (Li et al. 2017).

    Args:
        widths: Channels to keep: per consumer name (units not named keep every channel),
            or one share in (0, 1] of every unit's channels (rounded, at least the
            setting's ``min_channels``).
        source: ``"producer"``: the L1 norm of each producer filter (summed over coupled
            producers); ``"consumer"``: of the consumer weights reading each channel
            (summed over a coupled unit's members).
        refit: Refit the kept weights by least squares (needs data); False keeps them.
    """

    def __init__(self, widths: Mapping[str, int] | float, *, source: L1Source = "producer",
                 refit: bool = False) -> None:
        if source not in ("producer", "consumer"):
            raise ValueError(f"L1Magnitude.source: unknown {source!r}")
        if isinstance(widths, Mapping):
            bad = {n: k for n, k in widths.items() if int(k) < 1}
            if bad:
                raise ValueError(f"L1Magnitude.widths must be >= 1, got {bad}")
        elif not 0.0 < float(widths) <= 1.0:
            raise ValueError(f"L1Magnitude.widths: a share must be in (0, 1], got {widths}")
        self.widths = widths
        self.source: L1Source = source
        self.refit = bool(refit)

    def needs_data(self, unit: Sequence[Consumer]) -> bool:
        return self.refit

    def _width(self, unit: Unit) -> int:
        C = unit.num_channels
        if not isinstance(self.widths, Mapping):
            return min(max(round(float(self.widths) * C), min(unit.setting.min_channels, C), 1), C)
        named = [int(self.widths[n]) for n in unit.names if n in self.widths]
        if not named:
            return C
        if any(k != named[0] for k in named) or named[0] > C:
            raise ValueError(f"L1Magnitude: widths for {unit.names} must agree and be <= {C}, "
                             f"got {named}")
        return named[0]

    def select(self, unit: Unit) -> Selection:
        heads = unit.consumers[:1] if self.source == "producer" else unit.consumers
        score = sum(_l1_scores(unit.reference, c, self.source).cpu() for c in heads)
        assert isinstance(score, Tensor)
        score = score[unit.channels.cpu()]
        order = torch.sort(score, descending=True, stable=True).indices
        keep = torch.sort(order[:self._width(unit)]).values
        return Selection(keep=keep, params=_refit_all(unit, keep))


def l1_channel_ranking(
    model: nn.Module,
    consumer: str,
    *,
    example_inputs: Tensor | None = None,
    source: L1Source = "producer",
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
    dev = model_device(model)
    modes = snapshot_modes(model)
    try:
        dg = build_graph(model, example_inputs.to(dev))
        found = {c.name: c for c in discover_consumers(model, dg, example_inputs.to(dev))}
    finally:
        restore_modes(model, modes)
    if consumer not in found:
        raise ValueError(f"unknown consumer {consumer!r}; prunable consumers are {sorted(found)}")
    score = _l1_scores(model, found[consumer], source)
    return torch.sort(score.cpu(), descending=True, stable=True).indices
