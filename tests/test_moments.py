"""Tests of the streaming moments (pruning/moments.py)."""

from __future__ import annotations

import pytest
import torch

from pruning.moments import Moments

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _data(T: int, d: int, m: int, *, seed: int, offset: float = 0.0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(T, d, generator=g, dtype=torch.float64) + offset
    Y = X[:, :m] * 2.0 - X[:, -m:] + torch.randn(T, m, generator=g, dtype=torch.float64) + offset
    return X, Y


def _reference(X: torch.Tensor, Y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Two-pass statistics (torch.cov centres first), population normalisation."""
    d = X.shape[1]
    joint = torch.cov(torch.cat([X, Y], 1).T, correction=0)
    return {
        "mu_x": X.mean(0),
        "mu_y": Y.mean(0),
        "S": joint[:d, :d],
        "R": joint[d:, :d],
        "V": torch.diagonal(joint[d:, d:]),
    }


def _assert_matches(mom: Moments, X: torch.Tensor, Y: torch.Tensor, *, rtol: float) -> None:
    ref = _reference(X, Y)
    assert mom.n == X.shape[0]
    for name, want in ref.items():
        got = getattr(mom, name).cpu()
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * float(want.abs().max()))


@pytest.mark.parametrize("device", DEVICES)
def test_streaming_equals_direct_statistics(device: str) -> None:
    X, Y = _data(700, 12, 5, seed=0)
    mom = Moments(4, 3, 5)
    for a, b in [(0, 1), (1, 64), (64, 65), (65, 400), (400, 700)]:
        mom.update(X[a:b].to(device).float(), Y[a:b].to(device).float())
    assert mom.mu_x.device.type == device
    Xf, Yf = X.float().double(), Y.float().double()
    _assert_matches(mom, Xf, Yf, rtol=1e-10)


def test_large_means_keep_float64_accuracy() -> None:
    # With means 1e6 and unit variance the one-pass sum-of-squares formula loses ~1e-4
    # relative accuracy in float64; the shifted pairwise merge must not.
    X, Y = _data(3000, 6, 2, seed=1, offset=1e6)
    mom = Moments(3, 2, 2)
    for chunk in range(0, 3000, 250):
        mom.update(X[chunk : chunk + 250], Y[chunk : chunk + 250])
    _assert_matches(mom, X, Y, rtol=1e-9)
    naive = (X.T @ X) / 3000 - torch.outer(X.mean(0), X.mean(0))
    assert (naive - mom.S).abs().max() > 1e3 * (mom.S - _reference(X, Y)["S"]).abs().max()


def test_merge_equals_single_pass_and_subset_equals_sliced_data() -> None:
    X, Y = _data(500, 15, 4, seed=2, offset=3.0)
    single = Moments(5, 3, 4).update(X, Y)
    a = Moments(5, 3, 4).update(X[:123], Y[:123])
    b = Moments(5, 3, 4).update(X[123:], Y[123:])
    a.merge(b).merge(Moments(5, 3, 4))  # merging an empty accumulator is a no-op
    for name in ["mu_x", "mu_y", "S", "R", "V"]:
        torch.testing.assert_close(getattr(a, name), getattr(single, name), rtol=1e-12, atol=1e-12)
    assert a.n == 500

    sub = single.subset([3, 1])
    cols = [9, 10, 11, 3, 4, 5]
    _assert_matches(sub, X[:, cols], Y, rtol=1e-10)
    assert (sub.num_channels, sub.group_size) == (2, 3)


def test_from_statistics_round_trips() -> None:
    X, Y = _data(300, 6, 2, seed=5, offset=2.0)
    mom = Moments(3, 2, 2).update(X[:200], Y[:200])
    copy = Moments.from_statistics(
        n=mom.n,
        mu_x=mom.mu_x,
        mu_y=mom.mu_y,
        S=mom.S,
        R=mom.R,
        V=mom.V,
        num_channels=3,
        group_size=2,
    )
    copy.update(X[200:], Y[200:])
    _assert_matches(copy, X, Y, rtol=1e-10)
    with pytest.raises(ValueError, match="from_statistics"):
        Moments.from_statistics(
            n=1,
            mu_x=mom.mu_x,
            mu_y=mom.mu_y,
            S=mom.S,
            R=mom.R,
            V=mom.V,
            num_channels=2,
            group_size=2,
        )


def test_channel_std_pools_columns() -> None:
    X, Y = _data(400, 6, 2, seed=3)
    X = X * torch.tensor([1.0, 1.0, 5.0, 5.0, 0.0, 0.0], dtype=torch.float64)
    mom = Moments(3, 2, 2).update(X, Y)
    want = X.var(0, correction=0).view(3, 2).mean(1).sqrt()
    torch.testing.assert_close(mom.channel_std(), want)
    assert float(mom.channel_std()[2]) == 0.0


def test_bad_inputs_raise_clear_errors() -> None:
    mom = Moments(2, 3, 4)
    with pytest.raises(ValueError, match=r"\(T, 6\).*\(T, 4\).*\(5, 7\)"):
        mom.update(torch.zeros(5, 7), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="same T"):
        mom.update(torch.zeros(5, 6), torch.zeros(4, 4))
    X = torch.zeros(5, 6)
    X[2, 1] = float("nan")
    with pytest.raises(ValueError, match="X .*NaN/Inf"):
        mom.update(X, torch.zeros(5, 4))
    Y = torch.zeros(5, 4)
    Y[0, 0] = float("inf")
    with pytest.raises(ValueError, match="Y .*NaN/Inf"):
        mom.update(torch.zeros(5, 6), Y)
    assert mom.n == 0
    with pytest.raises(ValueError, match="no samples"):
        _ = mom.S
    with pytest.raises(ValueError, match="sizes differ"):
        mom.merge(Moments(2, 3, 5))


def test_explicit_device_moves_batches() -> None:
    mom = Moments(1, 2, 1, device="cpu")
    mom.update(torch.ones(3, 2, dtype=torch.float16), torch.ones(3, 1, dtype=torch.bfloat16))
    assert mom.device == torch.device("cpu")
    assert float(mom.mu_x[0]) == 1.0 and float(mom.V[0]) == 0.0


def test_float32_products_keep_float64_accuracy_with_large_means() -> None:
    """float32 batch products after float64 centring: moments agree to ~1e-5 relative."""
    gen = torch.Generator().manual_seed(3)
    X = 1e3 + torch.randn(4000, 96, generator=gen, dtype=torch.float64)
    Y = X[:, :8] @ torch.randn(8, 5, generator=gen, dtype=torch.float64) - 50.0
    ref = Moments(12, 8, 5)
    f32 = Moments(12, 8, 5, product_dtype=torch.float32)
    for i in range(0, 4000, 500):
        ref.update(X[i:i + 500], Y[i:i + 500])
        f32.update(X[i:i + 500].float(), Y[i:i + 500].float())
    for name in ("S", "R", "V"):
        a, b = getattr(f32, name), getattr(ref, name)
        assert a.dtype == torch.float64
        assert float((a - b).norm() / b.norm()) < 1e-5, name
    torch.testing.assert_close(f32.mu_x, ref.mu_x, rtol=1e-6, atol=0)
