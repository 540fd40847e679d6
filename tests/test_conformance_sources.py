"""The conformance check of any model (nas.testing.check_source) on a few models of
different kinds: residual (torchvision), depthwise + squeeze-excitation + hard-swish
(torchvision MobileNetV3), ConvNeXt's channel LayerNorms (timm) and a refusal with its
reason. The whole
list (python -m nas.testing) is in docs/conformance.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.testing import check_source, conformance_table

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::RuntimeWarning")]


@pytest.mark.parametrize("model", ["torchvision:resnet18", "torchvision:mobilenet_v3_small"])
def test_model_thins_to_half_its_macs_exports_and_rebuilds(model: str, tmp_path: Path) -> None:
    kind, _, name = model.partition(":")
    rep = check_source(kind, name, tmp_path, input_shape=(3, 32, 32))
    assert rep.status == "pass", rep.reason
    assert rep.macs_ratio is not None and abs(rep.macs_ratio - 0.5) <= 0.02 * 0.5
    assert rep.rebuild_max_diff == 0.0
    assert rep.onnx_max_diff is not None and rep.onnx_max_diff < 1e-3
    assert (tmp_path / "arch.json").is_file() and (tmp_path / "model.onnx").is_file()


def test_a_model_the_engine_cannot_take_is_a_refused_row_with_the_reason(tmp_path: Path) -> None:
    rep = check_source("factory", "tests.test_model_sources:group_norm_net", tmp_path,
                       input_shape=(3, 16, 16))
    assert rep.status == "refused"
    assert rep.reason is not None and "of type GroupNorm" in rep.reason
    table = conformance_table([rep])
    assert "refused" in table and "group_norm_net" in table


def test_shufflenet_thins_around_its_channel_shuffles(tmp_path: Path) -> None:
    rep = check_source("torchvision", "shufflenet_v2_x0_5", tmp_path, input_shape=(3, 32, 32))
    assert rep.status == "pass", rep.reason
    assert rep.macs_ratio is not None and abs(rep.macs_ratio - 0.5) <= 0.02
    assert rep.rebuild_max_diff == 0.0


def test_convnext_thins_through_its_channel_layernorms(tmp_path: Path) -> None:
    rep = check_source("timm", "convnext_atto", tmp_path, input_shape=(3, 32, 32))
    assert rep.status == "pass", rep.reason
    assert rep.rebuild_max_diff == 0.0
