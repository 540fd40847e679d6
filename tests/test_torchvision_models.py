"""Bring-your-own-model: sparsify torchvision networks that no family registers."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pruning import RegressionConfig, SparsifyConfig, sparsify

torchvision = pytest.importorskip("torchvision")

pytestmark = pytest.mark.slow


def _calib(n: int = 32) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 3, 32, 32, generator=gen)), batch_size=16)


def _sparsify(model: torch.nn.Module):
    # max_features keeps the test small: wide layers (layer3/4 of ResNet-18, VGG's 4096-wide
    # classifier) are reported as skipped instead of solving a d ~ 5000 regression on a CPU.
    cfg = SparsifyConfig(progress=False, max_features=1200,
                         regression=RegressionConfig(eps_L2=0.3, max_iter=100))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # T < d on 32 calibration images
        return sparsify(model, _calib(), cfg)


def test_torchvision_resnet18() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    result = _sparsify(model)

    by_layer = {r.layer: r for r in result.report}
    assert by_layer["layer1.0.conv1"].skipped_reason == "residual-coupled input channels"
    assert by_layer["fc"].skipped_reason == "residual-coupled input channels"
    assert by_layer["layer1.0.conv2"].skipped_reason is None
    assert by_layer["layer4.0.conv2"].skipped_reason.startswith("regression too large")
    assert any(r.kept < r.total for r in result.report if r.skipped_reason is None)
    assert result.after["params"] < result.before["params"]
    assert result.after["macs"] < result.before["macs"]
    out = result.model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and bool(torch.isfinite(out).all())


def test_torchvision_vgg11_bn() -> None:
    torch.manual_seed(0)
    model = torchvision.models.vgg11_bn(num_classes=10).eval()
    result = _sparsify(model)

    by_layer = {r.layer: r for r in result.report}
    # The first Linear reads a 7x7 map per channel (adaptive pool): 512 * 49 features.
    assert by_layer["classifier.0"].skipped_reason.startswith("regression too large")
    assert by_layer["features.4"].skipped_reason is None
    assert result.model.features[4].in_channels == by_layer["features.4"].kept
    assert result.after["params"] < result.before["params"]
    out = result.model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and bool(torch.isfinite(out).all())
