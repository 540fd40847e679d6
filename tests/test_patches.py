"""Tests of the regression samples: sampled conv patches, their outputs, linear rows
(pruning/patches.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruning.patches import conv_patches, gather_outputs, linear_inputs

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


CONVS = [
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=1),
    dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=0, bias=False),
    dict(in_channels=2, out_channels=3, kernel_size=(3, 2), stride=(1, 2), dilation=2),
    dict(in_channels=2, out_channels=3, kernel_size=4, padding="same"),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=1, padding_mode="reflect"),
    dict(in_channels=3, out_channels=2, kernel_size=1),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", CONVS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("positions", [None, 7])
def test_patches_reproduce_conv_output(spec: dict, positions: int | None, device: str) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(**spec).double().to(device)
    x = torch.randn(4, conv.in_channels, 9, 10, dtype=torch.float64, device=device)
    y = conv(x)
    gen = torch.Generator().manual_seed(1)
    patches, index = conv_patches(x, conv, positions_per_image=positions, generator=gen)
    n_pos = y.shape[2] * y.shape[3]
    per = n_pos if positions is None else positions
    assert patches.shape == (4 * per, conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1])
    assert patches.device.type == device
    # each image contributes `per` distinct positions
    for i in range(4):
        pos = index.positions[index.images == i]
        assert pos.numel() == per and pos.unique().numel() == per
    target = gather_outputs(y, index)
    pred = patches @ conv.weight.reshape(conv.out_channels, -1).T
    if conv.bias is not None:
        pred = pred + conv.bias
    torch.testing.assert_close(pred, target, rtol=1e-12, atol=1e-12)


def test_patch_sampling_is_seeded() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(5, 2, 6, 6)
    p1, i1 = conv_patches(
        x, conv, positions_per_image=4, generator=torch.Generator().manual_seed(3)
    )
    p2, i2 = conv_patches(
        x, conv, positions_per_image=4, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(i1.positions, i2.positions) and torch.equal(p1, p2)


def test_grouped_conv_is_refused() -> None:
    conv = nn.Conv2d(4, 4, 3, groups=4)
    with pytest.raises(ValueError, match="grouped/depthwise"):
        conv_patches(torch.zeros(1, 4, 5, 5), conv, positions_per_image=None, generator=None)


def test_gather_outputs_checks_spatial_size() -> None:
    conv = nn.Conv2d(1, 1, 3)
    _, index = conv_patches(torch.zeros(2, 1, 5, 5), conv, positions_per_image=2, generator=None)
    with pytest.raises(ValueError, match="gather_outputs"):
        gather_outputs(torch.zeros(2, 1, 4, 4), index)


def test_linear_inputs_are_channel_major() -> None:
    x = torch.randn(3, 4, 2, 5)
    flat = linear_inputs(x)
    assert flat.shape == (3, 40)
    hw = 10
    for c in range(4):
        assert torch.equal(flat[:, c * hw : (c + 1) * hw], x[:, c].reshape(3, hw))
    two_d = torch.randn(3, 7)
    assert linear_inputs(two_d) is two_d
