"""Depthwise convolutions are pruned with their channel coupling: a depthwise conv's input
and output are one group, cut together with the layer that feeds it, also where the group
is a residual stream that runs into a 1x1 conv's input and out of its output (MobileNetV3's
first block)."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

import pruning


class _Block(nn.Module):
    """stem -> [depthwise 3x3 + BN + ReLU -> 1x1 project + BN] + identity -> pool -> fc."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(c)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.project = nn.Conv2d(c, c, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        x = x + self.bn2(self.project(torch.relu(self.bn1(self.dw(x)))))
        return self.fc(x.mean((2, 3)))


def _calib() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(16, 3, 8, 8, generator=g) for _ in range(4)]


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_the_residual_stream_through_a_depthwise_conv_is_one_group() -> None:
    torch.manual_seed(0)
    model = _Block().eval()
    with pruning.Pass(model, None, pruning.SparsifyConfig(progress=False, residual="coupled"),
                      torch.zeros(1, 3, 8, 8)) as p:
        units = p.prunable_units()
        groups = {frozenset(c.name for c in u): set(u[0].producers) for u in units}
    # one group: the stream feeds the depthwise conv (through it, the project conv) and fc
    assert any({"project", "fc"} <= names for names in groups)


def test_cutting_the_group_cuts_the_depthwise_conv_and_refits_the_self_coupled_conv() -> None:
    torch.manual_seed(0)
    model = _Block().eval()
    _randomise_bn(model)
    cfg = pruning.SparsifyConfig(progress=False, residual="coupled", calib_positions_per_image=16)
    keep = [0, 2, 3, 5, 7]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = pruning.prune_to_widths(model, {"project": keep}, _calib(), refit=True, config=cfg)
    m: Any = res.model
    assert m.stem.out_channels == m.dw.in_channels == m.dw.out_channels == m.dw.groups == 5
    assert m.project.in_channels == m.project.out_channels == 5 and m.fc.in_features == 5
    out = m(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    # the project conv's refit kept its rows for the kept outputs: without the refit the
    # same channels give the same weights as slicing the original
    plain: Any = pruning.prune_to_widths(model, {"project": keep}, None, refit=False, config=cfg,
                                    example_inputs=torch.zeros(1, 3, 8, 8)).model
    idx = torch.tensor(keep)
    torch.testing.assert_close(plain.project.weight, model.project.weight[idx][:, idx])
    torch.testing.assert_close(plain.dw.weight, model.dw.weight[idx])
