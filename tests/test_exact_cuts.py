"""Registering a model checks that each channel group's cut removes exactly the channels it
names: a group whose dependency-graph map is wrong but keeps every shape (here channels
split into parts, each read by its own depthwise conv, concatenated and gated by
squeeze-excitation: Torch-Pruning 1.6 maps the gate's channels to the wrong parts) would
otherwise give a model that runs and is silently another function. Such a group is left
whole with its reason; the rest stay knobs, and a thinned build still runs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from search_spaces import build, default_spec
from search_spaces.generic import (
    ModelSource,
    _groups,
    _inexact_groups,
    left_alone,
    register_callable,
    register_source,
)


class _MixedSE(nn.Module):
    """stem -> 1x1 expand -> split into 3x3 / 5x5 depthwise parts -> concat -> SE gate ->
    1x1 project -> flatten -> fc."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.expand = nn.Conv2d(8, 16, 1)
        self.bn = nn.BatchNorm2d(16)
        self.dws = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1, groups=8),
                                  nn.Conv2d(8, 8, 5, padding=2, groups=8)])
        self.se_reduce = nn.Conv2d(16, 4, 1)
        self.se_expand = nn.Conv2d(4, 16, 1)
        self.project = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        h = torch.relu(self.bn(self.expand(x)))
        sizes = [int(c.out_channels) for c in self.dws if isinstance(c, nn.Conv2d)]  # read at call time: cut-proof
        parts = torch.split(h, sizes, 1)
        h = torch.cat([c(p) for c, p in zip(self.dws, parts, strict=True)], 1)
        gate = self.se_expand(torch.relu(self.se_reduce(h.mean((2, 3), keepdim=True))))
        h = self.project(h * torch.sigmoid(gate))
        return self.fc(torch.flatten(h, 1))


def _mixed_se(num_classes: int = 5) -> nn.Module:
    return _MixedSE(num_classes)


SHAPE = (3, 4, 4)


class _Normed(nn.Module):
    """A residual stream normalised over its channels (ConvNeXt-style, channels-last
    LayerNorm) before each block: a correct cut still changes the other channels' norm."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)
        self.inner = nn.Conv2d(8, 16, 1)
        self.outer = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        h = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = x + self.outer(torch.relu(self.inner(h)))
        return self.fc(x.mean((2, 3)))


def _normed(num_classes: int = 5) -> nn.Module:
    return _Normed(num_classes)


def test_the_wrongly_mapped_group_is_found() -> None:
    register_callable(_mixed_se, "mixed_se_probe")
    source = ModelSource("factory", "<local>:mixed_se_probe")
    groups = _groups(source.instantiate(5), SHAPE)
    assert "se_expand" in groups.widths  # the engine offers it as a knob ...
    # ... but its cut is not the channels it names; every other group's is
    assert _inexact_groups(source, groups, SHAPE, 5) == ["se_expand"]


def test_registration_leaves_it_whole_and_keeps_the_rest() -> None:
    fam = register_callable(_mixed_se, "mixed_se_family")
    source = ModelSource.parse(fam)
    assert source is not None
    family = register_source(source, input_shape=SHAPE, num_classes=5)
    spec = default_spec(family.name)
    assert "se_expand" not in spec.widths
    assert {"stem", "project"} <= set(spec.widths)
    # named with its reason (here the surgery's own check refuses the half cut first)
    assert "cutting it" in left_alone(family.name)["project"]
    model = build(spec.scaled(0.5)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *SHAPE)).shape == (2, 5)
    assert model.get_submodule("project").out_channels == 4


def test_a_stream_through_a_channel_layernorm_stays_a_knob() -> None:
    fam = register_callable(_normed, "normed_family")
    source = ModelSource.parse(fam)
    assert source is not None
    groups = _groups(source.instantiate(5), SHAPE)
    stream = "stem" if "stem" in groups.widths else "outer"
    assert stream in groups.mixing  # zeroing cannot show its cut exact: not checked so
    family = register_source(source, input_shape=SHAPE, num_classes=5)
    assert stream in default_spec(family.name).widths
    assert "inner" in default_spec(family.name).widths


class _Shuffled(nn.Module):
    """stem -> 1x1 (16) -> channel shuffle (2 groups) -> 1x1 -> pool -> fc."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 16, 1)
        self.b = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(torch.relu(self.stem(x))))
        n, c, hh, ww = h.shape
        h = h.view(n, 2, c // 2, hh, ww).transpose(1, 2).reshape(n, c, hh, ww)
        return self.fc(self.b(h).mean((2, 3)))


def _shuffled(num_classes: int = 5) -> nn.Module:
    return _Shuffled(num_classes)


def test_a_followed_channel_shuffle_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Were a channel shuffle mapped as the identity (the engine's reshape rule switched
    off for it here), the shuffled group would be a knob; the check finds it wrong."""
    import pruning.surgery

    rule = pruning.surgery._follows_reshape

    def identity_for_shuffles(graph: Any, node: Any, shapes: Any) -> bool | None:
        if shapes is not None and 5 in (len(shapes[0]), len(shapes[1])):
            return None
        return rule(graph, node, shapes)

    monkeypatch.setattr(pruning.surgery, "_follows_reshape", identity_for_shuffles)
    source = ModelSource.parse(register_callable(_shuffled, "shuffle_followed"))
    assert source is not None
    groups = _groups(source.instantiate(5), SHAPE)
    assert "a" in groups.widths  # the shuffled channels offered as a knob ...
    assert _inexact_groups(source, groups, SHAPE, 5) == ["a"]  # ... and caught
