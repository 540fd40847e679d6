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
- :class:`GreedyReconstruction`: greedy forward selection by least-squares reconstruction
  error (El Halabi et al. 2022, ThiNet-style), then the refit;
- :class:`LassoSelection`: LASSO on per-channel scales of the channels' contributions with
  the weights fixed, the penalty raised to the width (He et al. 2017), then the refit;
- :class:`EntropicAt`: the entropic ranking cut at given widths, then the refit;
- :class:`SameWidths`: another criterion's choice at the widths of given keep sets (the
  budgeted pass's allocation with a paper's selection).

The two paper criteria are written from their papers' descriptions on the same moments the
entropic regression reads (nothing else is collected), so only the selection differs.

Run any of them with :func:`pruning.prune_with`; ``tests/test_criteria.py`` holds every one
to the same contract.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from pruning.capture import model_device, restore_modes, snapshot_modes
from pruning.moments import Moments
from pruning.regression import RegressionConfig, entropic_regression, refit
from pruning.stacking import split_stacked, stack_moments
from pruning.surgery import Consumer, build_graph, discover_consumers

__all__ = ["Criterion", "Entropic", "EntropicAt", "GivenChannels", "GreedyReconstruction", "L1Magnitude",
           "LassoSelection", "SameWidths", "Selection", "Unit", "WidthCriterion",
           "greedy_reconstruction", "l1_channel_ranking", "lasso_path_select", "unit_moments"]


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

    def keep_before_data(self, unit: Sequence[Consumer]) -> Tensor | None:
        """The unit's kept channels when they are known before its data is read, else None.

        When a criterion knows them (given channels), the pass may cut the other channels
        first and then collect the moments of the kept ones only: the same least-squares
        refit (the moments of a subset of the features are the sub-block of the full
        moments) at a fraction of the cost, since the products grow with the square of the
        features; :meth:`select` is not asked for such a unit. The pass does so only where
        the cut leaves the inputs it collects as they were (a unit of one consumer, or X
        from the original network; where a layer normalises over the channels, the refit
        then fits the inputs the cut network really gives).
        """
        return None

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

    def _given(self, consumers: Sequence[Consumer]) -> Tensor | None:
        """The unit's keep set (sorted), None when no member is named; checks it."""
        given = {c.name: torch.sort(torch.unique(self.keep[c.name])).values
                 for c in consumers if c.name in self.keep}
        if not given:
            return None
        n_ch = int(consumers[0].num_channels)
        k = next(iter(given.values()))
        if any(not torch.equal(k, other) for other in given.values()):
            raise ValueError(f"prune_to_widths: coupled layers {sorted(given)} share their input "
                             "channels but got different keep sets")
        if k.numel() == 0 or int(k.min()) < 0 or int(k.max()) >= n_ch:
            raise ValueError(f"prune_to_widths: keep for {consumers[0].name!r} must be "
                             f"non-empty indices in [0, {n_ch})")
        return k

    def keep_before_data(self, unit: Sequence[Consumer]) -> Tensor | None:
        if not self.refit:
            return None  # no data is read: nothing to save
        k = self._given(unit)
        return k if k is not None and k.numel() < unit[0].num_channels else None

    def select(self, unit: Unit) -> Selection:
        k = self._given(unit.consumers)
        if k is None:
            k = torch.arange(unit.num_channels)
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


class WidthCriterion(Criterion):
    """A criterion told how many channels each unit keeps (the base of the ranking criteria).

    Args:
        widths: Channels to keep: per consumer name (units none of whose members is named
            keep every channel), or one share in (0, 1] of every unit's channels (rounded,
            at least the setting's ``min_channels``).
    """

    def __init__(self, widths: Mapping[str, int] | float) -> None:
        name = type(self).__name__
        if isinstance(widths, Mapping):
            bad = {n: k for n, k in widths.items() if int(k) < 1}
            if bad:
                raise ValueError(f"{name}.widths must be >= 1, got {bad}")
        elif not 0.0 < float(widths) <= 1.0:
            raise ValueError(f"{name}.widths: a share must be in (0, 1], got {widths}")
        self.widths = widths

    def _width(self, unit: Unit) -> int:
        C = unit.num_channels
        if not isinstance(self.widths, Mapping):
            return min(max(round(float(self.widths) * C), min(unit.setting.min_channels, C), 1), C)
        named = [int(self.widths[n]) for n in unit.names if n in self.widths]
        if not named:
            return C
        if any(k != named[0] for k in named) or named[0] > C:
            raise ValueError(f"{type(self).__name__}: widths for {unit.names} must agree and be "
                             f"<= {C}, got {named}")
        return named[0]


class L1Magnitude(WidthCriterion):
    """Keep the channels of largest L1 norm in the original network (Li et al. 2017).

    Args:
        widths: See :class:`WidthCriterion`.
        source: ``"producer"``: the L1 norm of each producer filter (summed over coupled
            producers); ``"consumer"``: of the consumer weights reading each channel
            (summed over a coupled unit's members).
        refit: Refit the kept weights by least squares (needs data); False keeps them.
    """

    def __init__(self, widths: Mapping[str, int] | float, *, source: L1Source = "producer",
                 refit: bool = False) -> None:
        if source not in ("producer", "consumer"):
            raise ValueError(f"L1Magnitude.source: unknown {source!r}")
        super().__init__(widths)
        self.source: L1Source = source
        self.refit = bool(refit)

    def needs_data(self, unit: Sequence[Consumer]) -> bool:
        return self.refit

    def select(self, unit: Unit) -> Selection:
        heads = unit.consumers[:1] if self.source == "producer" else unit.consumers
        score = sum(_l1_scores(unit.reference, c, self.source).cpu() for c in heads)
        assert isinstance(score, Tensor)
        score = score[unit.channels.cpu()]
        order = torch.sort(score, descending=True, stable=True).indices
        keep = torch.sort(order[:self._width(unit)]).values
        return Selection(keep=keep, params=_refit_all(unit, keep))


def unit_moments(unit: Unit) -> Moments:
    """The unit's moments as one problem (a coupled unit's stacked, :func:`stack_moments`)."""
    if unit.moments is None:
        raise ValueError(f"{unit.names}: the criterion needs the unit's regression moments")
    return unit.moments[0] if len(unit.moments) == 1 else stack_moments(unit.moments)[0]


def greedy_reconstruction(moments: Moments, k: int, *, ridge: float = 1e-8,
                          block: int = 16) -> Tensor:
    """Greedy forward selection of ``k`` channels by least-squares reconstruction error.

    Step by step, the channel whose features most reduce the error of the best linear fit of
    Y on the chosen channels (the refit) joins them: the gain of channel j given the chosen
    set K is ``tr(S_jj|K^-1 R_j|K^T R_j|K)``, with ``S_|K``, ``R_|K`` the covariances left
    after regressing out K's features (a block Gram-Schmidt step per pick).
    This is the greedy maximisation of the (weakly submodular) variance explained that El
    Halabi et al. 2022 ("Data-efficient structured pruning via submodular optimization",
    arXiv 2203.04940) use, and ThiNet's greedy choice with the refit inside it.

    The d x d conditional covariance is updated lazily: a pick needs only the candidates'
    diagonal g x g blocks (kept current, a batched g x g product per pick) and the chosen
    block's column (read through the pending updates), so the rank-g updates of ``block``
    picks are applied to the d x d matrix at once, as one matrix product on the channels
    still available. Same picks as updating every step (same arithmetic, other rounding
    order); a full ordering of a 512-channel 3x3 layer takes ~0.6x the time.

    Args:
        moments: The layer's moments (group size g: features per channel).
        k: Channels to keep, 1 <= k <= C.
        ridge: Relative ridge on each block solve (times the mean feature variance).
        block: Picks whose updates are applied to the d x d matrix together.

    Returns:
        LongTensor (k,) of kept channels in the order they were picked.
    """
    C, g = moments.num_channels, moments.group_size
    if not 1 <= k <= C:
        raise ValueError(f"greedy_reconstruction: k must be in [1, {C}], got {k}")
    if block < 1:
        raise ValueError(f"greedy_reconstruction: block must be >= 1, got {block}")
    S = (0.5 * (moments.S + moments.S.T)).contiguous()  # S_|K at the last compaction
    Rt = moments.R.T.contiguous()  # (d, m) R_|K^T, kept current; a channel's g rows adjacent
    d, m = Rt.shape
    dev, dt = S.device, S.dtype
    delta = max(float(ridge), 1e-12) * max(float(torch.diagonal(S).mean()), 1e-30)
    eye = torch.eye(g, dtype=dt, device=dev)
    offsets = torch.arange(g, device=dev)
    avail = torch.arange(C, device=dev)  # the channel of each g-block of S / Rt
    D = S.as_strided((C, g, g), (g * d + g, d, 1)).clone()  # current diagonal blocks
    taken = torch.zeros(C, dtype=torch.bool, device=dev)  # picked since the last compaction
    # pending updates: S_|K = S - U[:, :qg] @ V[:qg] (one g-column pair per pick)
    U = torch.empty(d, block * g, dtype=dt, device=dev)
    V = torch.empty(block * g, d, dtype=dt, device=dev)
    q = 0
    chosen: list[int] = []
    for step in range(k):
        Ca = int(avail.numel())
        n = Ca * g
        Rb = Rt.view(Ca, g, m)
        G = torch.bmm(Rb, Rb.transpose(1, 2))  # R_j^T R_j per candidate, (Ca, g, g)
        gain = torch.linalg.solve(D + delta * eye, G).diagonal(dim1=1, dim2=2).sum(1)
        gain[taken] = -torch.inf
        j = int(torch.argmax(gain))
        chosen.append(int(avail[j]))
        if step == k - 1:
            break
        taken[j] = True
        a = slice(j * g, (j + 1) * g)
        col = S[:, a].clone()  # (n, g): the chosen block's column of S_|K
        if q:
            col.addmm_(U[:n, :q * g], V[:q * g, a], alpha=-1)
        T = torch.linalg.solve(col[a] + delta * eye, col.T)  # S_jj^-1 S_j,: (g, n)
        Rt.addmm_(T.T, Rt[a].clone(), alpha=-1)
        D -= torch.bmm(col.view(Ca, g, g), T.view(g, Ca, g).transpose(0, 1))
        U[:n, q * g:(q + 1) * g] = col
        V[q * g:(q + 1) * g, :n] = T
        q += 1
        if q == block:  # apply the pending updates to the channels still available
            keep = (~taken).nonzero().flatten()
            idx = (keep[:, None] * g + offsets).flatten()
            S = S[idx[:, None], idx]
            S.addmm_(U[idx, :q * g], V[:q * g, idx], alpha=-1)
            Rt = Rt[idx].contiguous()
            D, avail, taken = D[keep].contiguous(), avail[keep], taken[keep]
            q = 0
    return torch.tensor(chosen, dtype=torch.long)


def lasso_path_select(A: Tensor, b: Tensor, k: int, *, iters: int = 3000,
                      tol: float = 1e-10) -> Tensor:
    """The ``k`` coefficients that survive an L1 penalty leaving at most ``k`` non-zero.

    Minimises ``0.5 beta^T A beta - b^T beta + lam |beta|_1`` by FISTA (warm-started) while
    ``lam`` is bisected between 0 and ``max |b|`` (where every coefficient is zero) for a
    penalty with exactly, or else at most, ``k`` non-zeros, as He et al. 2017 raise lambda
    until the constraint holds (the count need not fall monotonically with lambda; the
    bisection finds one such penalty, not the smallest). Returns the kept indices (k of them: the non-zeros at that penalty,
    topped up by |beta| at the next smaller penalty when the path jumps past k).
    """
    C = int(b.numel())
    if not 1 <= k <= C:
        raise ValueError(f"lasso_path_select: k must be in [1, {C}], got {k}")
    if k == C:
        return torch.arange(C)
    A = 0.5 * (A + A.T)
    L = float(torch.linalg.eigvalsh(A)[-1])
    if not L > 0:
        return torch.sort(torch.argsort(b.abs(), descending=True)[:k]).values

    def solve(lam: float, beta: Tensor) -> Tensor:
        z, t = beta.clone(), 1.0
        for it in range(iters):
            g = A @ z - b
            new = z - g / L
            new = torch.sign(new) * (new.abs() - lam / L).clamp_min(0.0)
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            z = new + (t - 1) / t_next * (new - beta)
            if it % 10 == 9:  # the convergence test syncs: every 10th step
                step = float((new - beta).abs().max())
                if step <= tol * max(float(new.abs().max()), 1e-30):
                    return new
            beta, t = new, t_next
        return beta

    lo, hi = 0.0, float(b.abs().max())
    beta_hi = torch.zeros_like(b)  # at hi: all zero (<= k non-zeros)
    beta_lo = solve(lo, torch.zeros_like(b))  # least squares: typically all non-zero
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        beta = solve(mid, beta_lo)
        nnz = int((beta != 0).sum())
        if nnz == k:
            beta_hi = beta
            break
        if nnz > k:
            lo, beta_lo = mid, beta
        else:
            hi, beta_hi = mid, beta
    # the non-zeros at the penalty found within the budget, topped up from the larger path
    def unit_max(v: Tensor) -> Tensor:
        return v.abs() / max(float(v.abs().max()), 1e-300)

    score = 4.0 * (beta_hi != 0).to(b.dtype) + unit_max(beta_lo) + 1e-9 * unit_max(b)
    return torch.sort(torch.argsort(score, descending=True)[:k]).values


def _contribution_gram(unit: Unit) -> tuple[Tensor, Tensor]:
    """He et al.'s LASSO problem on the moments: channel i contributes ``Z_i = X_i W_i^T /
    |W_i|_F`` (its slice of the consumer's current weights, normalised as the paper's
    constraint ``|W_i|_F = 1`` asks); ``A_ij = <Z_i, Z_j>``, ``b_i = <Y, Z_i>`` per sample,
    summed over a coupled unit's members, each scaled to unit mean output variance."""
    assert unit.moments is not None
    C = unit.num_channels
    A: Tensor | None = None
    b: Tensor | None = None
    for c, mom in zip(unit.consumers, unit.moments, strict=True):
        g = mom.group_size
        W = c.module.weight.detach().to(mom.S.device, torch.float64).reshape(c.module.weight.shape[0], -1)
        if tuple(W.shape) != (mom.num_outputs, C * g):
            raise ValueError(f"LassoSelection: {c.name}: weight {tuple(W.shape)} does not match "
                             f"its moments (outputs {mom.num_outputs}, features {C * g}); "
                             "grouped convolutions are not supported")
        scale = float(mom.V.mean())
        scale = scale if scale > 0 else 1.0
        # the paper constrains ||W_i||_F = 1, so beta_i carries each channel's scale and the
        # L1 penalty compares channels on their contributions' shape, not their weights' norm
        norm = W.view(-1, C, g).pow(2).sum(dim=(0, 2)).sqrt()
        norm = torch.where(norm > 0, norm, torch.ones_like(norm))
        Aj = (mom.S * (W.T @ W)).view(C, g, C, g).sum(dim=(1, 3)) / torch.outer(norm, norm) / scale
        bj = (mom.R * W).sum(0).view(C, g).sum(1) / norm / scale
        A = Aj if A is None else A + Aj
        b = bj if b is None else b + bj
    assert A is not None and b is not None
    return A, b


class GreedyReconstruction(WidthCriterion):
    """Keep the channels a greedy forward selection picks by least-squares reconstruction
    error of the unit's outputs (:func:`greedy_reconstruction`; El Halabi et al. 2022), then
    refit them by least squares like every data criterion.

    Args:
        widths: See :class:`WidthCriterion`.
    """

    def select(self, unit: Unit) -> Selection:
        mom = unit_moments(unit)
        k = self._width(unit)
        keep = torch.sort(greedy_reconstruction(mom, k, ridge=unit.setting.refit_ridge)).values
        return Selection(keep=keep, params=_refit_all(unit, keep))


class LassoSelection(WidthCriterion):
    """Keep the channels a LASSO on per-channel scales selects (He et al. 2017, "Channel
    pruning for accelerating very deep neural networks", arXiv 1707.06168): with the
    consumer's weights fixed, ``min_beta |Y - sum_i beta_i X_i W_i^T|^2 + lam |beta|_1``,
    ``lam`` raised until at most the width's channels are non-zero
    (:func:`lasso_path_select`); then the least-squares refit of the kept channels.

    Args:
        widths: See :class:`WidthCriterion`.
    """

    def select(self, unit: Unit) -> Selection:
        if unit.moments is None:
            raise ValueError(f"{unit.names}: LassoSelection needs the unit's regression moments")
        A, b = _contribution_gram(unit)
        keep = lasso_path_select(A, b, self._width(unit)).to(torch.long)
        return Selection(keep=keep.cpu(), params=_refit_all(unit, keep))


class EntropicAt(WidthCriterion):
    """The entropic regression with its ranking cut at a given width (``top_k``), then the
    least-squares refit: the entropic selection at another allocation's widths (the control
    that tells a selection's objective from the moments it is chosen on).

    Args:
        widths: See :class:`WidthCriterion`.
    """

    def select(self, unit: Unit) -> Selection:
        k = self._width(unit)
        setting = dataclasses.replace(unit.setting, top_k=k, keep_ratio=None,
                                      min_channels=min(unit.setting.min_channels, k))
        sel = Entropic().select(dataclasses.replace(unit, setting=setting))
        return Selection(keep=sel.keep, params=_refit_all(unit, sel.keep), w=sel.w, gap=sel.gap,
                         iterations=sel.iterations, converged=sel.converged)


class SameWidths(GivenChannels):
    """As many channels per unit as ``keep`` gives, chosen again by ``by`` on the unit's own
    moments (the budgeted pass's final pass with another selection: same widths, same
    refit, only the choice differs). A unit whose regression is too large for data keeps the
    given channels (cut without the refit, as :class:`GivenChannels` does).

    Args:
        keep: Consumer name -> the given kept channels (their count is the width).
        by: Makes the selecting criterion from ``{consumer name: width}``, e.g.
            ``GreedyReconstruction`` or ``LassoSelection``.
    """

    def __init__(self, keep: Mapping[str, Tensor | Sequence[int]],
                 by: Callable[[Mapping[str, int]], Criterion]) -> None:
        super().__init__(keep, refit=True)
        self.inner = by({n: int(v.numel()) for n, v in self.keep.items()})

    def keep_before_data(self, unit: Sequence[Consumer]) -> Tensor | None:
        return None  # the channels are chosen on the unit's moments

    def select(self, unit: Unit) -> Selection:
        if unit.moments is None or not any(c.name in self.keep for c in unit.consumers):
            return super().select(unit)
        return self.inner.select(unit)


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
