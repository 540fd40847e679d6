"""Coupled moments: one regression over several consumers of the same channels, sharing w.

In ``residual="coupled"`` mode every consumer of a residual-coupled channel set reads the
same C channels (the residual stream at different depths), so they must keep the same
channels. :func:`stack_moments` merges their moments into one problem whose objective is
the sum of theirs with one w (each output scaled to mean variance 1, so that no consumer
dominates by its output scale); :func:`split_stacked` cuts the refitted weights back into
one (weight, bias) per consumer and undoes the scales.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pruning.moments import Moments, feature_columns

__all__ = ["split_stacked", "stack_moments"]


def stack_moments(parts: list[Moments]) -> tuple[Moments, list[float]]:
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


def split_stacked(
    weight: Tensor, bias: Tensor, keep: Tensor, parts: list[Moments], scales: list[float]
) -> list[tuple[Tensor, Tensor]]:
    """Per member, the (weight, bias) on the kept channels from the stacked refit."""
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

