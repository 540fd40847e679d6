"""The activation caches change the cost of a pass, never its result.

The cached engine (one reference pass, pruned inputs resumed from cached activations through
the torch.fx graph) draws the same sampled positions and held-out rows as the plain
per-layer forward passes, so it must choose the same channels and give the same network:
on a chain (VGG), on residual networks in both modes, with and without sampling, and when
the budget is too small or the model cannot be traced.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import search_spaces as ss
from pruning import RegressionConfig, SparsifyConfig, prune_to_widths, sparsify
from pruning.activations import PrunedActivations


def _loader(shape: tuple[int, ...], n: int = 48, batch: int = 16) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=gen)
    return DataLoader(TensorDataset(x, torch.zeros(n, dtype=torch.long)), batch_size=batch)


def _cfg(cache: bool, **kw) -> SparsifyConfig:
    kw.setdefault("regression", RegressionConfig(eps_L2=0.3))
    kw.setdefault("calib_positions_per_image", None)
    kw.setdefault("heldout_fraction", 0.0)
    return SparsifyConfig(progress=False, cache_activations=cache, **kw)


def _pair(model: nn.Module, loader: DataLoader, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # T < d on tiny calibration sets
        plain = sparsify(model, loader, _cfg(False, **kw))
        cached = sparsify(model, loader, _cfg(True, **kw))
    return plain, cached


def _assert_same(plain, cached, shape: tuple[int, ...]) -> None:
    assert [r.kept_indices for r in cached.report] == [r.kept_indices for r in plain.report]
    assert any(r.kept < r.total for r in plain.report), "nothing pruned: the test is void"
    x = torch.randn(8, *shape)
    with torch.no_grad():
        torch.testing.assert_close(cached.model(x), plain.model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("family", "factor", "residual"), [
    ("vgg16_cifar", 0.0625, "inner"),
    ("lenet5", 1.0, "inner"),
    ("resnet18_cifar", 0.125, "inner"),
    ("resnet18_cifar", 0.125, "coupled"),
])
def test_cached_pass_equals_per_layer_pass(family: str, factor: float, residual: str) -> None:
    torch.manual_seed(0)
    spec = ss.default_spec(family).scaled(factor)
    model = ss.build(spec).eval()
    plain, cached = _pair(model, _loader(spec.input_shape), residual=residual)
    _assert_same(plain, cached, spec.input_shape)
    assert cached.engine["reference_cached"] and cached.engine["activations_cached"]
    assert cached.engine["resumed"] >= 2  # later layers started from a cached activation
    assert cached.engine["loader_passes"] == 1
    assert not plain.engine["reference_cached"]
    assert plain.engine["loader_passes"] > 2  # one per regressed layer (+ BN)


@pytest.mark.parametrize("residual", ["inner", "coupled"])
def test_sampled_positions_and_heldout_rows_are_the_same(residual: str) -> None:
    torch.manual_seed(0)
    spec = ss.default_spec("resnet18_cifar").scaled(0.125)
    model = ss.build(spec).eval()
    plain, cached = _pair(model, _loader(spec.input_shape), residual=residual,
                          calib_positions_per_image=5, heldout_fraction=0.2, seed=3)
    _assert_same(plain, cached, spec.input_shape)
    for a, b in zip(plain.report, cached.report, strict=True):
        assert (a.samples, a.rel_error_heldout) == pytest.approx((b.samples, b.rel_error_heldout),
                                                                 rel=1e-6, nan_ok=True)


def test_tiny_budget_falls_back_to_per_layer_passes() -> None:
    torch.manual_seed(0)
    spec = ss.default_spec("vgg16_cifar").scaled(0.0625)
    model = ss.build(spec).eval()
    plain, cached = _pair(model, _loader(spec.input_shape), cache_budget_bytes=1)
    _assert_same(plain, cached, spec.input_shape)
    assert not cached.engine["batches_cached"] and not cached.engine["reference_cached"]


class _DataDependent(nn.Module):
    """A forward with data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        if float(h.detach().mean()) > -1.0:  # always true, but fx cannot know
            h = torch.relu(self.conv2(h))
        return self.fc(h.mean((2, 3)))


def test_untraceable_model_uses_per_layer_passes() -> None:
    torch.manual_seed(0)
    model = _DataDependent().eval()
    assert not PrunedActivations(model, ["conv2", "fc"], 1, 1 << 30).enabled
    plain, cached = _pair(model, _loader((3, 8, 8)))
    _assert_same(plain, cached, (3, 8, 8))
    assert cached.engine["reference_cached"] and not cached.engine["activations_cached"]


def test_prune_to_widths_refit_is_the_same_with_the_cache() -> None:
    torch.manual_seed(0)
    spec = ss.default_spec("vgg16_cifar").scaled(0.0625)
    model = ss.build(spec).eval()
    keep = {"features.3": [0, 1, 2], "features.10": [1, 3, 5, 7]}
    loader = _loader(spec.input_shape)
    a = prune_to_widths(model, keep, loader, config=_cfg(False))
    b = prune_to_widths(model, keep, loader, config=_cfg(True))
    x = torch.randn(4, *spec.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(b.model(x), a.model(x), rtol=1e-4, atol=1e-5)


def test_resumed_activation_matches_a_full_forward() -> None:
    """After narrowing, a cached input resumes to the next consumer's exact input."""
    torch.manual_seed(0)
    spec = ss.default_spec("vgg16_cifar").scaled(0.0625)
    model = ss.build(spec).eval()
    acts = PrunedActivations(model, ["features.3", "features.7"], 1, 1 << 30)
    assert acts.enabled
    x = torch.randn(4, *spec.input_shape)
    (a3,) = acts.inputs(["features.3"], 0, x)
    acts.store(["features.3"], [[a3]])
    (a7,) = acts.inputs(["features.7"], 0, x)
    seen: dict[str, torch.Tensor] = {}
    hook = model.get_submodule("features.7").register_forward_pre_hook(
        lambda _m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        model(x)
    hook.remove()
    torch.testing.assert_close(a7, seen["x"], rtol=0, atol=0)
