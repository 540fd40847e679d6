"""Parameter / MAC / memory / latency counters against published numbers and hand counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import search_spaces as ss
from pruning.measure import (
    ModelMetrics,
    count_macs,
    count_params,
    fp32_mib,
    layer_macs,
    measure,
    measure_latency,
    prunable_params,
    sparsity,
)


def _model(name: str) -> tuple[nn.Module, tuple[int, int, int]]:
    spec = ss.default_spec(name)
    return ss.build(spec), spec.input_shape


def test_lenet5_exact_counts() -> None:
    model, shape = _model("lenet5")
    assert count_params(model) == 61_706
    # conv1 6*28*28*25 + conv2 16*10*10*6*25 + fc 400*120 + 120*84 + 84*10
    assert count_macs(model, shape) == 416_520
    assert layer_macs(model, shape) == {
        "conv1": 117_600, "conv2": 240_000, "fc1": 48_000, "fc2": 10_080, "fc3": 840,
    }


@pytest.mark.parametrize(
    ("name", "params", "published_macs", "exact_macs"),
    [
        ("vgg16_cifar", 14_724_042, 0.314e9, 313_201_664),
        ("resnet18_cifar", 11_173_962, 0.557e9, 555_422_720),
    ],
)
def test_cifar_families_match_published_counts(
    name: str, params: int, published_macs: float, exact_macs: int
) -> None:
    model, shape = _model(name)
    assert count_params(model) == params
    macs = count_macs(model, shape)
    # fvcore / thop / torchinfo agree within 0.5 % (they differ on BN/add bookkeeping).
    assert macs == pytest.approx(published_macs, rel=5e-3)
    assert macs == exact_macs


def test_grouped_conv_and_linear_on_sequences() -> None:
    model = nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1, groups=4),  # 16*4*4 outputs x (8/4)*9
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),  # depthwise: x 1*9
        nn.Flatten(2),  # N, 16, 16
        nn.Linear(16, 5),  # applied to 16 positions: 16*5 outputs x 16
    )
    assert count_macs(model, (8, 4, 4)) == 256 * 18 + 256 * 9 + 80 * 16


def test_counts_do_not_change_the_model_mode() -> None:
    model, shape = _model("small_cnn")
    model.train()
    count_macs(model, shape)
    assert model.training


def test_fp32_mib_counts_buffers() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))
    # 108 conv weights + BN weight, bias, running_mean, running_var (4 each) + 1 counter
    assert fp32_mib(model) == pytest.approx((108 + 16 + 1) * 4 / 2**20)


def test_prunable_params_and_sparsity() -> None:
    model, _ = _model("small_cnn")
    bn = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d)
             for p in m.parameters())
    assert prunable_params(model) == count_params(model) - bn
    assert sparsity(1000, 250) == pytest.approx(0.75)
    assert sparsity(1000, 1000) == 0.0
    with pytest.raises(ValueError):
        sparsity(0, 0)


def test_measure_and_latency_fields() -> None:
    model, shape = _model("lenet5")
    metrics = measure(model, shape, latency=True, batch_size=4, warmup=1, repeats=5, threads=1)
    assert isinstance(metrics, ModelMetrics)
    d = metrics.to_dict()
    assert d["params"] == 61_706 and d["macs"] == 416_520 and d["flops"] == 2 * 416_520
    assert d["input_shape"] == [1, 28, 28]
    lat = d["latency"]
    for key in ("median_ms", "iqr_ms", "p25_ms", "p75_ms", "min_ms", "batch_size", "device",
                "threads", "warmup", "repeats"):
        assert key in lat
    assert lat["batch_size"] == 4 and lat["device"] == "cpu" and lat["threads"] == 1
    assert lat["repeats"] == 5
    assert 0 < lat["min_ms"] <= lat["median_ms"]
    assert lat["iqr_ms"] >= 0
    assert measure(model, shape).latency is None


def test_latency_restores_threads_and_mode() -> None:
    model, shape = _model("lenet5")
    model.train()
    before = torch.get_num_threads()
    measure_latency(model, shape, warmup=0, repeats=2, threads=1)
    assert torch.get_num_threads() == before
    assert model.training
