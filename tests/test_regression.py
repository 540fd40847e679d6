"""Tests of the sparse entropic regression (pruning/regression.py)."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import pytest
import torch

from pruning.moments import Moments
from pruning.regression import (
    RegressionConfig,
    entropic_regression,
    envelope_gradient,
    lambda_step,
    objective,
    reconstruction_error,
    refit,
    select_channels,
)

Solver = Literal["envelope", "alternating"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Planted layer: channel 0 is all zero, 5 duplicates 2, 7..11 are pure noise that Y does not
# depend on; Y is an exact linear function of channels 1, 2 (= 5), 3, 4 and 6.
ZERO, DUPLICATE_PAIR, NOISE, USED = 0, (2, 5), [7, 8, 9, 10, 11], [1, 3, 4, 6]


def _planted(T: int = 2000, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, Moments]:
    g = torch.Generator().manual_seed(seed)
    C, k, m = 12, 4, 6
    X = torch.randn(T, C, k, generator=g, dtype=torch.float64) * 3.0 + 5.0
    X[:, ZERO] = 0.0
    X[:, 5] = X[:, 2]
    W = torch.randn(m, C, k, generator=g, dtype=torch.float64)
    W[:, [ZERO, 5, *NOISE]] = 0.0
    Y = torch.einsum("tck,mck->tm", X, W) + 1.0
    X = X.reshape(T, C * k)
    return X, Y, Moments(C, k, m).update(X, Y)


def _structured(
    C: int, k: int, m: int, T: int, *, seed: int, decay: float = 3.0, noise: float = 0.1
) -> Moments:
    """Correlated ReLU-like inputs; channel importance decays geometrically."""
    g = torch.Generator().manual_seed(seed)
    d = C * k
    Z = torch.randn(T, 8, generator=g, dtype=torch.float64)
    X = (
        (Z @ torch.randn(8, d, generator=g, dtype=torch.float64) * 0.5)
        .add(torch.randn(T, d, generator=g, dtype=torch.float64))
        .relu()
    )
    imp = torch.exp(-torch.arange(C, dtype=torch.float64) / decay).repeat_interleave(k)
    W = torch.randn(m, d, generator=g, dtype=torch.float64) * imp
    Y = X @ W.T + noise * torch.randn(T, m, generator=g, dtype=torch.float64)
    return Moments(C, k, m).update(X, Y)


def _assert_non_increasing(history: list[float]) -> None:
    h = torch.tensor(history, dtype=torch.float64)
    slack = 1e-12 * h.abs().max() + 1e-15
    assert bool((h[1:] <= h[:-1] + slack).all()), (
        f"objective rose by {float((h[1:] - h[:-1]).max())}"
    )


@pytest.mark.parametrize("solver", ["envelope", "alternating"])
def test_planted_structure_is_recovered(solver: Solver) -> None:
    X, Y, mom = _planted()
    res = entropic_regression(mom, RegressionConfig(solver=solver, max_iter=2000))
    kept = set(res.keep.tolist())
    assert kept & set(DUPLICATE_PAIR) and len(kept & set(DUPLICATE_PAIR)) == 1
    assert kept - set(DUPLICATE_PAIR) == set(USED)
    assert float(res.w[ZERO]) == 0.0  # constant channel never enters the active set
    assert res.converged and res.gap > 1e3
    assert res.rel_error < 1e-3
    # the refit reproduces Y sample by sample, bias included
    cols = torch.cat([torch.arange(c * 4, c * 4 + 4) for c in res.keep.tolist()])
    pred = X[:, cols] @ res.weight.T + res.bias
    assert float(((pred - Y) ** 2).sum() / ((Y - Y.mean(0)) ** 2).sum()) < 1e-3


@pytest.mark.parametrize("solver", ["envelope", "alternating"])
@pytest.mark.parametrize("eps_E", [-1e-3, 0.0, 1e-3])
def test_objective_never_increases(solver: Solver, eps_E: float) -> None:
    mom = _structured(10, 3, 5, 400, seed=1, decay=2.0, noise=0.3)
    res = entropic_regression(mom, RegressionConfig(solver=solver, eps_E=eps_E, eps_L2=0.1))
    assert len(res.objective_history) > 3
    _assert_non_increasing(res.objective_history)
    assert res.iterations >= 1 and res.seconds > 0


@pytest.mark.parametrize("eps_E", [-1e-3, 0.0])
def test_envelope_and_alternating_reach_the_same_stationary_point(eps_E: float) -> None:
    mom = _structured(10, 3, 5, 400, seed=1, decay=2.0, noise=0.3)
    cfg = RegressionConfig(eps_E=eps_E, eps_L2=0.1, tol=1e-10, max_iter=5000)
    env = entropic_regression(mom, cfg)
    alt = entropic_regression(mom, dataclasses.replace(cfg, solver="alternating"))
    F_env, F_alt = env.objective_history[-1], alt.objective_history[-1]
    assert abs(F_env - F_alt) <= 1e-7 * abs(F_env)
    assert torch.equal(env.keep, alt.keep)
    torch.testing.assert_close(env.w[env.keep], alt.w[alt.keep], rtol=1e-3, atol=0.0)
    # KKT on the simplex: the envelope gradient is equal across the kept channels and
    # larger on the removed ones (they would raise F if given weight)
    g = envelope_gradient(mom, env.w, cfg)
    g_kept = g[env.keep]
    assert float(g_kept.max() - g_kept.min()) <= 1e-3 * float(g_kept.abs().mean())
    removed = torch.ones_like(env.w, dtype=torch.bool)
    removed[env.keep] = False
    assert bool((g[removed] > g_kept.max()).all())


@pytest.mark.parametrize("eps_E", [-1e-2, 0.0, 1e-2])
def test_envelope_gradient_matches_finite_differences(eps_E: float) -> None:
    mom = _structured(6, 2, 3, 300, seed=2)
    cfg = RegressionConfig(eps_E=eps_E, eps_L2=0.1)
    w = torch.linspace(0.5, 1.5, 6, dtype=torch.float64)
    w = w / w.sum()

    def F(v: torch.Tensor) -> float:
        lam, lam0 = lambda_step(mom, v, cfg)
        return objective(mom, v, lam, lam0, cfg)

    g = envelope_gradient(mom, w, cfg)
    h = 1e-6
    for c in range(6):
        e = torch.zeros(6, dtype=torch.float64)
        e[c] = h
        fd = (F(w + e) - F(w - e)) / (2 * h)
        assert fd == pytest.approx(float(g[c]), rel=1e-6, abs=1e-9)


def test_lambda_step_minimises_the_objective_and_matches_history() -> None:
    mom = _structured(8, 2, 4, 300, seed=3)
    cfg = RegressionConfig(eps_L2=0.05)
    res = entropic_regression(mom, cfg)
    lam, lam0 = lambda_step(mom, res.w, cfg)
    F = objective(mom, res.w, lam, lam0, cfg)
    assert pytest.approx(res.objective_history[-1], rel=1e-9) == F
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        bumped = lam + 1e-3 * torch.randn(lam.shape, generator=g, dtype=torch.float64)
        assert objective(mom, res.w, bumped, lam0, cfg) > F
    assert objective(mom, res.w, lam, lam0 + 1e-3, cfg) > F


def test_tiny_ridge_without_entropy_keeps_everything_and_refit_is_least_squares() -> None:
    g = torch.Generator().manual_seed(4)
    C, k, m, T = 6, 3, 4, 500
    X = torch.randn(T, C * k, generator=g, dtype=torch.float64) * 2.0 + 1.0
    Y = X @ torch.randn(C * k, m, generator=g, dtype=torch.float64) + 0.5 * torch.randn(
        T, m, generator=g, dtype=torch.float64
    )
    mom = Moments(C, k, m).update(X, Y)
    res = entropic_regression(mom, RegressionConfig(eps_L2=1e-9, eps_E=0.0, refit_ridge=0.0))
    assert res.keep.tolist() == list(range(C))
    assert math.isinf(res.gap)
    design = torch.cat([X, torch.ones(T, 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(design, Y).solution
    torch.testing.assert_close(res.weight, sol[:-1].T, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(res.bias, sol[-1], rtol=1e-9, atol=1e-10)
    # the default relative ridge of 1e-6 only moves the weights by ~1e-6
    tiny = entropic_regression(mom, RegressionConfig(eps_L2=1e-9, eps_E=0.0))
    torch.testing.assert_close(tiny.weight, res.weight, rtol=1e-5, atol=1e-6)


def test_negative_entropy_alone_concentrates_w() -> None:
    """Characterises the eps_E < 0 regime: with a vanishing ridge the entropy term alone
    drives w to a vertex of the simplex, while the fit still uses every channel (their w
    stays far above sqrt(eps_L2/d)). Sparsity is then no longer monotone in eps_L2: pick
    eps_L2 large against |eps_E| (or eps_E = 0) when sweeping."""
    mom = _structured(12, 3, 6, 600, seed=5)
    tiny = entropic_regression(mom, RegressionConfig(eps_L2=1e-9, eps_E=-1e-3))
    moderate = entropic_regression(mom, RegressionConfig(eps_L2=1e-3, eps_E=-1e-3))
    no_entropy = entropic_regression(mom, RegressionConfig(eps_L2=1e-9, eps_E=0.0))
    assert len(no_entropy.keep) == 12
    assert len(tiny.keep) < len(moderate.keep)


@pytest.mark.parametrize(
    ("eps_E", "sweep"),
    [
        (0.0, [1e-6, 1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 3.0]),
        (-1e-3, [1e-3, 3e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 3.0]),
    ],
)
def test_eps_L2_is_a_monotone_sparsity_knob(eps_E: float, sweep: list[float]) -> None:
    mom = _structured(16, 3, 8, 800, seed=6)
    widths = [
        len(entropic_regression(mom, RegressionConfig(eps_E=eps_E, eps_L2=e)).keep) for e in sweep
    ]
    assert all(a >= b for a, b in zip(widths, widths[1:], strict=False)), widths
    assert widths[0] > widths[-1]


def test_top_k_and_min_channels() -> None:
    mom = _structured(10, 2, 4, 300, seed=7)
    for top_k in (1, 3, 10):
        res = entropic_regression(mom, RegressionConfig(top_k=top_k))
        assert len(res.keep) == top_k
        assert res.weight.shape == (4, top_k * 2)
        assert bool((res.keep[1:] > res.keep[:-1]).all())
    huge = entropic_regression(mom, RegressionConfig(eps_L2=1e4, min_channels=3))
    assert len(huge.keep) == 3
    assert huge.rel_error < 1.0
    with pytest.raises(ValueError, match="top_k"):
        RegressionConfig(top_k=2, min_channels=3)


def test_fewer_samples_than_features_warns_and_stays_finite() -> None:
    g = torch.Generator().manual_seed(8)
    X = torch.randn(30, 48, generator=g, dtype=torch.float64)
    Y = X[:, :3] + 0.1 * torch.randn(30, 3, generator=g, dtype=torch.float64)
    mom = Moments(12, 4, 3).update(X, Y)
    with pytest.warns(RuntimeWarning, match=r"T=30.*d=48"):
        res = entropic_regression(mom)
    assert bool(torch.isfinite(res.weight).all()) and bool(torch.isfinite(res.bias).all())
    assert math.isfinite(res.rel_error) and len(res.keep) >= 1
    assert 0 in res.keep.tolist()  # the channel Y is built from


def test_standardisation_makes_the_selection_scale_free() -> None:
    g = torch.Generator().manual_seed(9)
    C, k, m, T = 8, 2, 3, 600
    X = torch.randn(T, C * k, generator=g, dtype=torch.float64)
    W = torch.randn(m, C * k, generator=g, dtype=torch.float64)
    W[:, 8:] *= 0.05
    Y = X @ W.T + 0.05 * torch.randn(T, m, generator=g, dtype=torch.float64)
    scale = torch.logspace(-3, 3, C, dtype=torch.float64).repeat_interleave(k)
    base = entropic_regression(Moments(C, k, m).update(X, Y), RegressionConfig(eps_L2=0.1))
    scaled = entropic_regression(
        Moments(C, k, m).update(X * scale + 7.0, Y * 1e4 - 3.0), RegressionConfig(eps_L2=0.1)
    )
    assert torch.equal(base.keep, scaled.keep) and len(base.keep) < C
    torch.testing.assert_close(scaled.w, base.w, rtol=1e-6, atol=1e-12)
    cols = torch.cat([torch.arange(c * k, c * k + k) for c in base.keep.tolist()])
    torch.testing.assert_close(scaled.weight, base.weight * 1e4 / scale[cols], rtol=1e-6, atol=0.0)
    assert scaled.rel_error == pytest.approx(base.rel_error, rel=1e-6)


def test_reconstruction_error_on_held_out_moments() -> None:
    mom_fit = _structured(8, 2, 4, 400, seed=10)
    res = entropic_regression(mom_fit, RegressionConfig(eps_L2=0.1))
    g = torch.Generator().manual_seed(11)
    X = torch.randn(300, 16, generator=g, dtype=torch.float64).relu()
    Y = X[:, :4] * 2.0 + 0.3 * torch.randn(300, 4, generator=g, dtype=torch.float64)
    held = (
        Moments(8, 2, 4).update(X[:100], Y[:100]).merge(Moments(8, 2, 4).update(X[100:], Y[100:]))
    )
    cols = torch.cat([torch.arange(c * 2, c * 2 + 2) for c in res.keep.tolist()])
    pred = X[:, cols] @ res.weight.T + res.bias
    direct = float(((Y - pred) ** 2).sum() / ((Y - Y.mean(0)) ** 2).sum())
    assert reconstruction_error(held, res.keep, res.weight, res.bias) == pytest.approx(
        direct, rel=1e-9
    )


def test_shrunk_weights_are_worse_than_the_refit_but_close() -> None:
    mom = _structured(10, 2, 4, 500, seed=12)
    ls = entropic_regression(mom, RegressionConfig(eps_L2=0.03))
    sh = entropic_regression(mom, RegressionConfig(eps_L2=0.03, refit="shrunk"))
    assert torch.equal(ls.keep, sh.keep)
    assert ls.rel_error <= sh.rel_error < ls.rel_error + 0.1
    w_ls, b_ls = refit(mom, ls.keep, ridge=1e-6)
    torch.testing.assert_close(ls.weight, w_ls)
    torch.testing.assert_close(ls.bias, b_ls)


def test_select_channels_rules() -> None:
    w = torch.tensor([0.5, 1e-9, 0.3, 0.2, 1e-12, 0.0], dtype=torch.float64)
    assert select_channels(w, tau=0.05, top_k=None, min_channels=1).tolist() == [0, 2, 3]
    assert select_channels(w, tau=0.05, top_k=None, min_channels=5).tolist() == [0, 1, 2, 3, 4]
    assert select_channels(w, tau=0.05, top_k=None, min_channels=99).tolist() == list(range(6))
    assert select_channels(w, tau=0.05, top_k=2, min_channels=1).tolist() == [0, 2]
    tie = torch.full((4,), 0.25, dtype=torch.float64)
    assert select_channels(tie, tau=0.05, top_k=2, min_channels=1).tolist() == [0, 1]
    with pytest.raises(ValueError, match="top_k"):
        select_channels(w, tau=0.05, top_k=7, min_channels=1)


def test_restarts_never_make_the_objective_worse() -> None:
    mom = _structured(10, 2, 4, 400, seed=13, noise=0.5)
    one = entropic_regression(mom, RegressionConfig(eps_L2=0.3))
    many = entropic_regression(mom, RegressionConfig(eps_L2=0.3, restarts=3))
    assert many.objective_history[-1] <= one.objective_history[-1] * (1 + 1e-9)
    _assert_non_increasing(many.objective_history)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="solver"):
        RegressionConfig(solver="newton")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refit"):
        RegressionConfig(refit="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps_L2"):
        RegressionConfig(eps_L2=-1.0)


@pytest.mark.slow
def test_conv_sized_layer_converges_in_few_iterations() -> None:
    # C=32, k=9, m=64, T=10 d: a small VGG-like conv layer (C=64, m=128 solves in ~0.2-0.4 s
    # on an idle 2-core CPU; wall time is not asserted, shared CI machines make it noise).
    mom = _structured(32, 9, 64, 10 * 288, seed=14, decay=6.0)
    res = entropic_regression(mom, RegressionConfig(eps_L2=0.03))
    assert res.converged and res.iterations < 100
    assert 1 <= len(res.keep) < 32 and res.gap > 1e3
    assert res.rel_error < 0.01


@pytest.mark.parametrize("device", DEVICES)
def test_device_agnostic(device: str) -> None:
    X, Y, _ = _planted(T=600)
    mom = Moments(12, 4, 6).update(X.float().to(device), Y.float().to(device))
    res = entropic_regression(mom)
    for t in (res.w, res.keep, res.weight, res.bias):
        assert t.device.type == device
    cpu = entropic_regression(Moments(12, 4, 6).update(X.float(), Y.float()))
    assert torch.equal(res.keep.cpu(), cpu.keep)
    torch.testing.assert_close(res.weight.cpu(), cpu.weight, rtol=1e-6, atol=1e-8)
