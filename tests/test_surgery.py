"""Physical channel removal: shapes shrink, coupled tensors follow, unsupported layers fail."""

from __future__ import annotations

import model_helpers as mh
import pytest
import torch
from torch import nn

import search_spaces as ss
from pruning.surgery import (
    SurgeryError,
    UnsupportedLayerError,
    build_graph,
    discover_consumers,
    remove_input_channels,
    set_consumer_parameters,
)


def _graph(model: nn.Module, shape: tuple[int, ...]):
    x = torch.randn(2, *shape)
    dg = build_graph(model, x)
    return dg, {c.name: c for c in discover_consumers(model, dg, x)}, x


def test_conv_shapes_shrink_and_bn_entries_follow() -> None:
    torch.manual_seed(0)
    model = mh.small_cnn().eval()
    with torch.no_grad():
        mh.running_stats(model.bn2)[0].uniform_(-1, 1)
    dg, cons, x = _graph(model, (1, 8, 8))
    keep = [0, 5, 7, 31]
    w2, b2 = model.conv2.weight.clone(), model.bn2.bias.clone()
    rm2 = mh.running_stats(model.bn2)[0].clone()
    w3 = model.conv3.weight.clone()

    dropped = remove_input_channels(dg, cons["conv3"], torch.tensor(keep))

    assert dropped == sorted(set(range(32)) - set(keep))
    assert model.conv2.out_channels == 4 and model.conv2.weight.shape[0] == 4
    assert model.bn2.num_features == 4
    mean, var = mh.running_stats(model.bn2)
    assert mean.shape == (4,) and var.shape == (4,)
    assert model.conv3.in_channels == 4 and model.conv3.weight.shape[1] == 4
    # The kept channels keep their parameters, in order.
    assert torch.equal(model.conv2.weight, w2[keep])
    assert torch.equal(model.bn2.bias, b2[keep])
    assert torch.equal(mean, rm2[keep])
    assert torch.equal(model.conv3.weight, w3[:, keep])
    assert model(x).shape == (2, 10)


def test_lenet_fc1_groups_the_flattened_features_per_conv_channel() -> None:
    model = mh.lenet5().eval()
    dg, cons, x = _graph(model, (1, 28, 28))
    fc1 = cons["fc1"]
    assert fc1.kind == "linear" and fc1.features_per_channel == 25  # 5x5 map per channel
    assert fc1.num_channels == 16 and fc1.producers == ("conv2",)
    assert cons["fc2"].features_per_channel == 1
    assert "conv1" not in cons  # fed by the image: never a consumer

    w = model.fc1.weight.clone()
    remove_input_channels(dg, fc1, [1, 4])

    assert model.conv2.out_channels == 2 and model.fc1.in_features == 50
    cols = list(range(25, 50)) + list(range(100, 125))
    assert torch.equal(model.fc1.weight, w[:, cols])
    assert model(x).shape == (2, 10)


def test_resnet_residual_coupling_is_detected() -> None:
    spec = ss.default_spec("resnet18_cifar").scaled(0.125)
    model = ss.build(spec).eval()
    dg, cons, x = _graph(model, (3, 32, 32))

    assert "conv1" not in cons
    first = cons["layer1.0.conv1"]
    assert first.coupling == "residual" and first.skip_reason is not None
    assert set(first.producers) == {"conv1", "layer1.0.conv2", "layer1.1.conv2"}
    assert set(first.consumers) == {"layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1",
                                    "layer2.0.shortcut.0"}
    assert cons["linear"].coupling == "residual"
    inner = cons["layer2.0.conv2"]
    assert inner.coupling is None and inner.skip_reason is None
    assert inner.producers == ("layer2.0.conv1",) and inner.bn_after == "layer2.0.bn2"

    # Inner pruning leaves the residual widths alone.
    remove_input_channels(dg, inner, [0, 2, 3])
    widths = ss.spec_from_model(model).widths
    assert widths["layer2.0.conv1"] == 3 and widths["stage2"] == spec.widths["stage2"]
    assert model(x).shape == (2, 10)


class _DepthwiseNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)  # depthwise
        self.bn1 = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 12, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(12)
        self.grouped = nn.Conv2d(12, 12, 3, padding=1, groups=3)  # grouped, not depthwise
        self.head = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        x = torch.relu(self.bn1(self.dw(x)))
        x = torch.relu(self.bn2(self.pw(x)))
        x = torch.relu(self.grouped(x))
        return self.head(x.mean((2, 3)))


def test_grouped_and_depthwise_convs_are_skipped_not_failing() -> None:
    model = _DepthwiseNet().eval()
    dg, cons, x = _graph(model, (3, 8, 8))

    assert cons["dw"].skip_reason == "grouped/depthwise conv"
    assert cons["grouped"].skip_reason == "grouped/depthwise conv"
    # Reading a grouped conv's outputs would prune that grouped conv: left alone.
    assert cons["head"].skip_reason == "channels shared with a grouped conv"
    # The pointwise conv reads the stem's channels through the depthwise conv.
    pw = cons["pw"]
    assert pw.skip_reason is None and pw.producers == ("stem",)

    remove_input_channels(dg, pw, [0, 3, 6])
    assert model.stem.out_channels == 3 and model.bn0.num_features == 3
    assert model.dw.in_channels == model.dw.out_channels == model.dw.groups == 3
    assert model.bn1.num_features == 3 and model.pw.in_channels == 3
    assert model(x).shape == (2, 5)


class _WithLayerNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.norm = nn.LayerNorm([4, 6, 6])
        self.fc = nn.Linear(4 * 36, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.norm(self.conv(x)), 1))


class _WithLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.rnn = nn.Sequential(nn.LSTM(8, 4, batch_first=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.fc(x))[0]


@pytest.mark.parametrize(
    ("model", "shape", "name", "kind"),
    [
        (_WithLayerNorm(), (1, 8, 8), "norm", "LayerNorm"),
        (_WithLSTM(), (5, 8), "rnn.0", "LSTM"),
    ],
)
def test_unsupported_layer_error_names_the_module(model, shape, name, kind) -> None:
    with pytest.raises(UnsupportedLayerError) as err:
        build_graph(model, torch.randn(2, *shape))
    assert repr(name) in str(err.value) and kind in str(err.value)


def test_bad_keep_sets_are_refused() -> None:
    model = mh.lenet5().eval()
    dg, cons, _ = _graph(model, (1, 28, 28))
    with pytest.raises(SurgeryError, match="zero channels"):
        remove_input_channels(dg, cons["conv2"], [])
    with pytest.raises(SurgeryError, match="must lie in"):
        remove_input_channels(dg, cons["conv2"], [0, 6])
    assert remove_input_channels(dg, cons["conv2"], list(range(6))) == []  # keep all: no-op
    assert model.conv1.out_channels == 6


def test_intercept_folds_into_the_following_batchnorm() -> None:
    torch.manual_seed(0)
    model = mh.small_cnn().eval()
    with torch.no_grad():
        for bn in (model.bn2, model.bn3):
            mean, var = mh.running_stats(bn)
            mean.uniform_(-1, 1)
            var.uniform_(0.5, 2)
    dg, cons, x = _graph(model, (1, 8, 8))
    conv3 = cons["conv3"]
    assert model.conv3.bias is None and conv3.bn_after == "bn3"
    h = torch.relu(model.bn2(model.conv2(torch.relu(model.bn1(model.conv1(x))))))
    new_w = torch.randn_like(model.conv3.weight)
    new_b = torch.randn(64)
    with torch.no_grad():
        expected = model.bn3(nn.functional.conv2d(h, new_w, new_b, padding=1))

    where = set_consumer_parameters(model, conv3, new_w.reshape(64, -1), new_b)

    assert where == "bn:bn3" and model.conv3.bias is None
    with torch.no_grad():
        got = model.bn3(model.conv3(h))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
