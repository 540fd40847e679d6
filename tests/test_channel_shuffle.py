"""Channels that pass through a reshape which permutes them (ShuffleNet's channel shuffle)
are left whole and named, never cut by a wrong index map; the channels around them are
still pruned, and every cut removes exactly the channels it says (checked by zeroing the
consumers' weights on those channels first: the cut model must then compute the same
function). A flatten into a Linear is still followed."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

import pruning
from pruning.engine import run_given
from pruning.surgery import build_graph, discover_consumers, remove_input_channels

SHUFFLE_REASON = "channels pass through a reshape that permutes them"


def _shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class _ShuffleNet(nn.Module):
    """stem -> [1x1 -> BN -> dw 3x3 -> BN -> 1x1] -> cat with stem -> shuffle -> 1x1 -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.expand = nn.Conv2d(8, 12, 1)
        self.bn1 = nn.BatchNorm2d(12)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.bn2 = nn.BatchNorm2d(12)
        self.project = nn.Conv2d(12, 8, 1)
        self.head = nn.Conv2d(16, 10, 1)
        self.fc = nn.Linear(10 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.stem(x))
        b = self.project(self.bn2(self.dw(torch.relu(self.bn1(self.expand(s))))))
        y = torch.relu(self.head(_shuffle(torch.cat([s, b], 1))))
        return self.fc(torch.flatten(y, 1))


class _LayerScaled(nn.Module):
    """A ConvNeXt-style per-channel scale, reshaped from (C,) to (1, C, 1, 1) in the
    forward: only unit dimensions are added, the channel map is the identity."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.inner = nn.Conv2d(8, 12, 1)
        self.outer = nn.Conv2d(12, 8, 1)
        self.gamma = nn.Parameter(torch.rand(8) + 0.5)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.gamma.reshape(1, -1, 1, 1) * self.outer(torch.relu(self.inner(x)))
        return self.fc(x.mean((2, 3)))


class _ChannelsLast(nn.Module):
    """A ConvNeXt-style MLP over channels-last positions: two Linears on (N, H, W, C), which
    autograd runs through views of (N*H*W, C); the channels are the last dimension."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 8)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.fc2(nn.functional.gelu(self.fc1(x.permute(0, 2, 3, 1)))).permute(0, 3, 1, 2)
        return self.head((x + y).mean((2, 3)))


def _randomised_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        mean, var = getattr(m, "running_mean", None), getattr(m, "running_var", None)
        if isinstance(m, nn.BatchNorm2d) and mean is not None and var is not None:
            mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _units(model: nn.Module, example: torch.Tensor) -> dict[str, pruning.surgery.Consumer]:
    return {c.name: c for c in discover_consumers(model, build_graph(model, example), example)}


def _check_exact_cut(model: nn.Module, example: torch.Tensor, x: torch.Tensor,
                     consumers: list[str]) -> None:
    """Zero every listed consumer's last input channel, cut that channel without a refit:
    the outputs must not move (a wrong index map cuts a channel that matters)."""
    found = _units(model, example)
    for name in consumers:
        weight = model.get_submodule(name).weight
        assert isinstance(weight, torch.Tensor)
        k = found[name].features_per_channel
        with torch.no_grad():
            weight[:, -k:] = 0.0
    with torch.no_grad():
        want = model(x)
    keep = {name: list(range(found[name].num_channels - 1)) for name in consumers}
    config = pruning.SparsifyConfig(progress=False, residual="coupled")
    cut = run_given(model, keep, None, config, example, refit=False).model.eval()
    for name in consumers:
        want_inputs = found[name].num_inputs - found[name].features_per_channel
        cut_weight = cut.get_submodule(name).weight
        assert isinstance(cut_weight, torch.Tensor) and cut_weight.shape[1] == want_inputs, name
    with torch.no_grad():
        got = cut(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_shuffled_channels_are_left_whole_and_named() -> None:
    model = _randomised_bn(_ShuffleNet())
    example = torch.zeros(1, 3, 4, 4)
    found = _units(model, example)
    # the stem's and the block's channels are shuffled on the way to the head
    assert SHUFFLE_REASON in (found["head"].skip_reason or "")
    # inside the block nothing is shuffled: expand -> dw -> project is one prunable group
    assert found["project"].skip_reason is None
    assert found["project"].producers == ("expand",)
    # the flatten into the Linear is followed: 16 features per head channel
    assert found["fc"].skip_reason is None and found["fc"].features_per_channel == 16


def test_the_cuts_around_a_shuffle_remove_the_channels_they_name() -> None:
    torch.manual_seed(0)
    model = _randomised_bn(_ShuffleNet())
    example = torch.zeros(1, 3, 4, 4)
    _check_exact_cut(model, example, torch.randn(6, 3, 4, 4), ["project", "fc"])


def test_a_shuffled_group_is_never_cut() -> None:
    model = _randomised_bn(_ShuffleNet())
    example = torch.zeros(1, 3, 4, 4)
    config = pruning.SparsifyConfig(progress=False, residual="coupled")
    with pytest.raises(Exception, match="head"):
        run_given(model, {"head": list(range(8))}, None, config, example, refit=False)


def test_a_reshape_that_only_adds_unit_dimensions_is_followed() -> None:
    model = _LayerScaled().eval()
    example = torch.zeros(1, 3, 4, 4)
    found = _units(model, example)
    assert found["outer"].skip_reason is None  # inside the block
    # the residual stream (stem + outer, scaled by gamma) is one coupled unit, not a shuffle
    assert SHUFFLE_REASON not in (found["fc"].skip_reason or "")
    assert set(found["fc"].producers) == {"stem", "outer"}
    torch.manual_seed(0)
    _check_exact_cut(model, example, torch.randn(4, 3, 4, 4), ["outer"])


def test_views_over_channels_last_positions_are_followed() -> None:
    model = _ChannelsLast().eval()
    example = torch.zeros(1, 3, 4, 4)
    found = _units(model, example)
    assert found["fc2"].skip_reason is None and found["fc2"].producers == ("fc1",)
    torch.manual_seed(0)
    _check_exact_cut(model, example, torch.randn(4, 3, 4, 4), ["fc2"])


def test_a_cut_does_not_change_how_a_reshape_is_read() -> None:
    """Reshapes are judged on the traced shapes once: after a cut has shrunk the channels,
    the next group's refresh must not read the old shapes against the new counts and turn
    a followed view into an unfollowed one (which would refuse the next cut)."""
    model = _ChannelsLast().eval()
    example = torch.zeros(1, 3, 4, 4)
    dg = build_graph(model, example)
    found = {c.name: c for c in discover_consumers(model, dg, example)}
    before = set(dg.unfollowed_reshapes)
    remove_input_channels(dg, found["fc2"], list(range(13)))
    remove_input_channels(dg, found["fc2"], list(range(10)))  # a second cut, same graph
    assert set(dg.unfollowed_reshapes) == before
    assert model.fc2.in_features == 10


@pytest.mark.slow
def test_torchvision_shufflenet_prunes_around_its_shuffles() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _randomised_bn(torchvision.models.shufflenet_v2_x0_5(num_classes=10))
    example = torch.zeros(1, 3, 64, 64)
    found = _units(model, example)
    prunable = [n for n, c in found.items() if c.skip_reason is None]
    shuffled = [n for n, c in found.items() if SHUFFLE_REASON in (c.skip_reason or "")]
    assert "stage3.0.branch2.5" in prunable and "fc" in prunable
    assert "conv5.0" in shuffled and "stage4.0.branch2.0" in shuffled
    # one single-consumer unit of each kind: inside a block, and the classifier
    torch.manual_seed(0)
    _check_exact_cut(model, example, torch.randn(2, 3, 64, 64),
                     ["stage3.0.branch2.5", "stage2.1.branch2.5", "fc"])
