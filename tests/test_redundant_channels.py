"""Duplicated input channels are removed (issue 10 item 4).

A copy of a producer filter makes the consumer's input channels exact (or, with noise,
near-exact) twins. The objective is lower when one twin carries both, but the symmetric
point is a saddle of F(w) that exponentiated gradient leaves only slowly; the solver's
``escape_noise`` kick (pruning/regression.py) must take it off that saddle.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pruning
from pruning.moments import Moments
from pruning.regression import RegressionConfig, entropic_regression


def _twin_moments(*, noise: float, seed: int, C: int = 32) -> Moments:
    """C channels that are all worth keeping; channel 1 is a (noisy) copy of channel 0."""
    g = torch.Generator().manual_seed(seed)
    T, m = 4000, 16
    X = torch.randn(T, C, generator=g, dtype=torch.float64).relu()
    X[:, 1] = X[:, 0] + noise * torch.randn(T, generator=g, dtype=torch.float64)
    W = torch.randn(m, C, generator=g, dtype=torch.float64)
    W[:, 1] = W[:, 0]
    Y = X @ W.T + 0.01 * torch.randn(T, m, generator=g, dtype=torch.float64)
    return Moments(C, 1, m).update(X, Y)


@pytest.mark.parametrize("noise", [0.0, 1e-3])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_twin_leaves_and_the_fit_stays(noise: float, seed: int) -> None:
    mom = _twin_moments(noise=noise, seed=seed)
    res = entropic_regression(mom, RegressionConfig(eps_L2=1e-3))
    kept = set(res.keep.tolist())
    assert len(kept & {0, 1}) == 1, f"twins kept: {sorted(kept & {0, 1})}"
    assert kept - {0, 1} == set(range(2, 32))  # nothing else was worth removing
    assert res.rel_error < 1e-3


def test_without_the_kick_the_solver_stops_on_the_saddle() -> None:
    # Documents the cause: same problem, kick disabled -> both twins stay, higher F.
    mom = _twin_moments(noise=0.0, seed=1)  # a seed where the plain solver stalls
    stuck = entropic_regression(mom, RegressionConfig(eps_L2=1e-3, escape_tries=0))
    fixed = entropic_regression(mom, RegressionConfig(eps_L2=1e-3))
    assert {0, 1} <= set(stuck.keep.tolist())
    assert fixed.objective_history[-1] < stuck.objective_history[-1]


class _TwoConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x)))


@pytest.mark.parametrize("near", [False, True])
def test_planted_filter_copies_go_and_the_output_is_kept(near: bool) -> None:
    # Seed 2: every other channel is worth keeping and the plain solver (escape_tries=0)
    # converges in 5 iterations with both exact twins kept (the near copy alone breaks the
    # symmetry enough for it).
    torch.manual_seed(2)
    net = _TwoConv().eval()
    weight, bias = net.conv1.weight, net.conv1.bias
    assert bias is not None
    with torch.no_grad():  # exact copy 0 -> 1; noise-perturbed copy 2 -> 3
        weight[1] = weight[0]
        bias[1] = bias[0]
        if near:
            weight[3] = weight[2] * (1 + 1e-3 * torch.randn_like(weight[2]))
            bias[3] = bias[2]
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(32, 3, 8, 8, generator=g) for _ in range(8)]
    cfg = pruning.SparsifyConfig(regression=RegressionConfig(eps_L2=1e-3), progress=False,
                                 calib_positions_per_image=None)
    res = pruning.sparsify(net, batches, cfg)
    kept = set(res.report[0].kept_indices)
    assert len(kept & {0, 1}) == 1, sorted(kept)
    assert not near or len(kept & {2, 3}) == 1, sorted(kept)
    conv1 = res.model.get_submodule("conv1")
    assert isinstance(conv1, nn.Conv2d) and conv1.out_channels == len(kept) == (14 if near else 15)
    x = torch.randn(16, 3, 8, 8, generator=g)
    with torch.no_grad():
        y, y_hat = net(x), res.model(x)
    assert float((y - y_hat).pow(2).sum() / (y - y.mean((0, 2, 3), keepdim=True)).pow(2).sum()) < 1e-3


def test_a_channel_in_the_span_of_two_others_goes() -> None:
    g = torch.Generator().manual_seed(0)
    T, C, m = 5000, 16, 8
    X = torch.randn(T, C, generator=g, dtype=torch.float64).relu()
    X[:, 2] = X[:, 0] + X[:, 1]
    W = torch.randn(m, C, generator=g, dtype=torch.float64)
    Y = X @ W.T + 0.01 * torch.randn(T, m, generator=g, dtype=torch.float64)
    res = entropic_regression(Moments(C, 1, m).update(X, Y), RegressionConfig(eps_L2=1e-3))
    kept = set(res.keep.tolist())
    assert len(kept & {0, 1, 2}) == 2 and len(kept) == C - 1
    assert res.rel_error < 1e-3
