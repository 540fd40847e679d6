"""Any model as a family: torchvision / timm / factory sources, their generic specs (widths
from the engine's graph), rebuild by surgery on a fresh instance, in this process and in a
fresh one, and the refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import search_spaces as ss
from search_spaces.generic import ModelSource, coupled_keys, register_callable, width_units
from search_spaces.spec import SpecError

ROOT = Path(__file__).resolve().parents[1]
FACTORY = textwrap.dedent('''
    from torch import nn

    def make_net(num_classes=10, width=16):
        return nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.BatchNorm2d(2 * width),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes))
''')


@pytest.fixture()
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "user_nets_mod.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_torchvision_resnet18_widths_come_from_the_graph_and_rebuild() -> None:
    fam = ss.family_for("torchvision", "resnet18", input_shape=(3, 32, 32), num_classes=10)
    spec = ss.default_spec(fam.name)
    # one key per channel group, named by a producer's module path
    assert "layer1.0.conv1" in spec.widths and spec.widths["layer1.0.conv1"] == 64
    assert len(spec.widths) == len(width_units(fam.name)) == 12
    assert "layer1.1.conv2" in coupled_keys(fam.name)  # the residual stream of stage 1
    half = spec.scaled(0.5)
    model = ss.build(half)
    assert ss.spec_from_model(model) == half
    assert model.layer1[0].conv1.out_channels == 32  # type: ignore[index, union-attr]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert ss.ArchSpec.from_dict(json.loads(half.to_json())) == half


def test_an_exported_spec_rebuilds_in_a_fresh_process(tmp_path: Path) -> None:
    fam = ss.family_for("torchvision", "resnet18", input_shape=(3, 32, 32), num_classes=10)
    spec = ss.default_spec(fam.name).scaled(0.25)
    path = spec.save(tmp_path / "arch.json")
    code = ("import sys, torch, search_spaces as ss; s = ss.ArchSpec.load(sys.argv[1]); "
            "m = ss.build(s).eval(); print(ss.spec_from_model(m) == s, tuple(m(torch.zeros(1, 3, 32, "
            "32)).shape))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, check=True)
    assert out.stdout.split() == ["True", "(1,", "10)"]


def test_timm_and_a_users_factory(factory_module: Path) -> None:
    fam = ss.family_for("timm", "resnet18d", input_shape=(3, 32, 32), num_classes=7)
    assert ss.build(ss.default_spec(fam.name).scaled(0.5)).eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 7)
    src = ModelSource("factory", "user_nets_mod:make_net", {"width": 8})
    own = ss.register_source(src, input_shape=(3, 16, 16), num_classes=4)
    assert own.name == 'factory:user_nets_mod:make_net?{"width":8}'
    spec = ss.default_spec(own.name)
    assert spec.widths == {"0": 8, "3": 16}
    small = ss.build(spec.with_widths({"0": 3}))
    assert small[0].out_channels == 3 and small(torch.zeros(2, 3, 16, 16)).shape == (2, 4)  # type: ignore[index]
    assert ss.source_meta(own.name) == {"library": "factory", "name": "user_nets_mod:make_net",
                                        "kwargs": {"width": 8}, "version": None}


def test_a_factory_defined_in_a_script_is_local_to_its_process() -> None:
    def make() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(),
                                   torch.nn.Conv2d(4, 4, 1), torch.nn.Flatten(),
                                   torch.nn.Linear(4 * 4 * 4, 3))

    name = register_callable(make, "scripted")
    assert name.startswith("factory:<local>:scripted")
    assert ss.build(ss.default_spec(name, input_shape=(3, 4, 4))).__class__ is torch.nn.Sequential


def group_norm_net(num_classes: int = 10) -> torch.nn.Module:
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.ReLU(), nn.Conv2d(8, 8, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def test_what_the_engine_cannot_take_is_refused_with_the_layer_and_reason() -> None:
    with pytest.raises(SpecError, match="'1' of type GroupNorm"):  # groups across channels
        ss.family_for("factory", f"{__name__}:group_norm_net", input_shape=(3, 16, 16))
    with pytest.raises(SpecError, match="no model 'resnet9000'"):
        ss.family_for("torchvision", "resnet9000")
    with pytest.raises(SpecError, match="'module.path:callable'"):
        ModelSource("factory", "no_colon")
    with pytest.raises(SpecError, match="unknown model family 'nope'"):
        ss.get_family("nope")


def test_the_family_name_encodes_source_and_kwargs() -> None:
    src = ModelSource("torchvision", "resnet18", {"width_per_group": 32})
    assert ModelSource.parse(src.family_name()) == src
    assert ModelSource.parse("lenet5") is None
    with pytest.raises(SpecError, match="not JSON"):
        ModelSource.parse("timm:x?{bad")


def test_no_source_downloads_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("no_proxy", "*")
    model = ModelSource("torchvision", "mobilenet_v2").instantiate(10)
    assert model.classifier[-1].out_features == 10  # type: ignore[index, union-attr]
    assert os.environ["HF_HUB_OFFLINE"] == "1"
