"""The refit's ridge chosen on held-out rows.

With few rows per feature the plain least-squares refit fits the sampled rows, not the
layer. ``refit_on_heldout`` refits at each ridge of a grid and keeps the one with the lowest
held-out error; on a well-posed problem that is the smallest ridge, on an ill-posed noisy one
a larger one that generalises better. ``SparsifyConfig(refit_ridge_from_heldout=True)`` does
this per layer and reports the ridge.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import pruning
import search_spaces as ss
from pruning.regression import REFIT_RIDGES, reconstruction_error, refit, refit_on_heldout


def _moments(X: torch.Tensor, Y: torch.Tensor, C: int, g: int) -> pruning.Moments:
    m = pruning.Moments(num_channels=C, group_size=g, num_outputs=Y.shape[1])
    m.update(X, Y)
    return m


def _problem(rows: int, noise: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    C, g, m = 12, 4, 6  # d = 48 features
    W = torch.randn(m, C * g, generator=gen, dtype=torch.float64)

    def sample(n: int):
        X = torch.randn(n, C * g, generator=gen, dtype=torch.float64)
        return X, X @ W.T + noise * torch.randn(n, m, generator=gen, dtype=torch.float64)

    return C, g, sample(rows), sample(2000)


def test_well_posed_problem_keeps_the_smallest_ridge() -> None:
    C, g, (X, Y), (Xh, Yh) = _problem(rows=4000, noise=0.0)
    keep = torch.arange(C)
    _, _, ridge = refit_on_heldout(_moments(X, Y, C, g), _moments(Xh, Yh, C, g), keep)
    assert ridge == min(REFIT_RIDGES)


def test_ill_posed_noisy_problem_takes_a_larger_ridge_that_generalises() -> None:
    C, g, (X, Y), (Xh, Yh) = _problem(rows=40, noise=3.0)  # T < d, noisy
    keep = torch.arange(C)
    train, held = _moments(X, Y, C, g), _moments(Xh, Yh, C, g)
    weight, bias, ridge = refit_on_heldout(train, held, keep)
    assert ridge > 1e-3  # beyond the floor refit adds itself when T < d
    # below that floor every ridge is the floor: tried (and reported) once, as used
    _, _, small = refit_on_heldout(train, held, keep, ridges=(1e-8, 1e-6))
    assert small == 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        w0, b0 = refit(train, keep, ridge=1e-6)
    chosen = reconstruction_error(held, keep, weight, bias)
    plain = reconstruction_error(held, keep, w0, b0)
    assert chosen < 0.9 * plain


def _loader(shape: tuple[int, ...], n: int = 24) -> DataLoader:
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, torch.zeros(n, dtype=torch.long)), batch_size=8)


def test_sparsify_chooses_and_reports_the_ridge_per_layer() -> None:
    torch.manual_seed(0)
    spec = ss.default_spec("vgg16_cifar").scaled(0.0625)
    model = ss.build(spec).eval()
    runs = {}
    for choose in (False, True):
        cfg = pruning.SparsifyConfig(progress=False, calib_positions_per_image=2,
                                     heldout_fraction=0.3, seed=0,
                                     refit_ridge_from_heldout=choose,
                                     regression=pruning.RegressionConfig(eps_L2=0.3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            runs[choose] = pruning.sparsify(model, _loader(spec.input_shape), cfg)
    done = [r for r in runs[True].report if r.skipped_reason is None]
    assert done and all(r.refit_ridge in REFIT_RIDGES for r in done)
    assert any(r.refit_ridge > min(REFIT_RIDGES) for r in done), "no layer chose: void test"
    fixed = [r for r in runs[False].report if r.skipped_reason is None]
    # the ridge refit used: the configured one, or its floor where T < d
    def kept_features(r: pruning.LayerReport) -> int:
        return r.kept * (r.features // r.total)

    assert all(r.refit_ridge == (pruning.RegressionConfig().refit_ridge
                                 if r.samples >= kept_features(r) else 1e-3) for r in fixed)
    assert any(r.samples < kept_features(r) for r in fixed)
    assert any(r.samples >= kept_features(r) for r in fixed)
    # the first layer sees the same rows and keeps the same channels in both runs: the
    # chosen ridge cannot do worse on its held-out rows than the fixed one
    assert done[0].kept_indices == fixed[0].kept_indices
    assert done[0].rel_error_heldout <= fixed[0].rel_error_heldout * (1 + 1e-9)
    assert math.isfinite(done[0].rel_error_heldout)


def test_needs_heldout_rows() -> None:
    with pytest.raises(ValueError, match="refit_ridge_from_heldout"):
        pruning.SparsifyConfig(refit_ridge_from_heldout=True, heldout_fraction=0.0)
