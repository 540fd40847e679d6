"""ArchSpec: JSON round trip, validation errors naming the field, build/spec_from_model."""

from __future__ import annotations

import json

import model_helpers as mh
import pytest
import torch

import search_spaces as ss
from search_spaces import ArchSpec, SpecError

FAMILIES = ss.list_families()


def test_registry_lists_the_builtin_families() -> None:
    assert {"lenet5", "small_cnn", "vgg16_cifar", "resnet18_cifar"} <= set(FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_builds_forwards_and_round_trips(name: str, tmp_path) -> None:
    spec = ss.default_spec(name)
    model = ss.build(spec).eval()
    out = model(torch.randn(2, *spec.input_shape))
    assert out.shape == (2, spec.num_classes)
    assert ss.spec_from_model(model) == spec
    path = spec.save(tmp_path / "arch.json")
    assert ArchSpec.load(path) == spec
    assert ArchSpec.from_dict(json.loads(path.read_text())) == spec


@pytest.mark.parametrize("name", FAMILIES)
def test_thinned_spec_rebuilds_with_identical_shapes(name: str) -> None:
    spec = ss.default_spec(name).scaled(0.37)
    model = ss.build(spec)
    back = ss.spec_from_model(model)
    assert back == spec
    rebuilt = ss.build(back)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}
    assert rebuilt(torch.randn(1, *spec.input_shape)).shape == (1, spec.num_classes)


@pytest.mark.parametrize(
    ("name", "params"),
    [("lenet5", 61_706), ("vgg16_cifar", 14_724_042), ("resnet18_cifar", 11_173_962)],
)
def test_paper_families_have_the_usual_parameter_counts(name: str, params: int) -> None:
    model = ss.build(ss.default_spec(name))
    assert sum(p.numel() for p in model.parameters()) == params


def test_num_classes_override() -> None:
    spec = ss.default_spec("lenet5", num_classes=3)
    assert ss.build(spec)(torch.randn(1, 1, 28, 28)).shape == (1, 3)


def _dict() -> dict:
    return ss.default_spec("lenet5").to_dict()


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(family="nope"), "unknown model family 'nope'"),
        (lambda d: d["widths"].update(conv9=3), "unknown layer(s) ['conv9']"),
        (lambda d: d["widths"].pop("fc2"), "missing layer(s) ['fc2']"),
        (lambda d: d["widths"].update(conv1=0), "widths['conv1']: width must be positive"),
        (lambda d: d["widths"].update(fc1=-4), "widths['fc1']: width must be positive"),
        (lambda d: d["widths"].update(fc1=2.5), "widths['fc1']: expected an int"),
        (lambda d: d.update(num_classes=0), "num_classes"),
        (lambda d: d.update(input_shape=[1, 28]), "input_shape"),
        (lambda d: d.update(colour="red"), "unknown field(s) ['colour']"),
        (lambda d: d.pop("widths"), "missing field 'widths'"),
        (lambda d: d.update(format_version=99), "format_version"),
    ],
)
def test_invalid_spec_names_the_field(mutate, needle: str) -> None:
    data = _dict()
    mutate(data)
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict(data)
    assert needle in str(err.value)


def test_load_names_the_file(tmp_path) -> None:
    bad = tmp_path / "arch.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="arch.json: not valid JSON"):
        ArchSpec.load(bad)
    with pytest.raises(SpecError, match="not found"):
        ArchSpec.load(tmp_path / "missing.json")
    data = _dict()
    data["widths"]["conv2"] = 0
    bad.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=r"arch.json: widths\['conv2'\]"):
        ArchSpec.load(bad)


def test_spec_from_model_rejects_broken_residual_widths() -> None:
    model = mh.resnet18()
    model.layer2[1].conv2 = torch.nn.Conv2d(128, 100, 3, padding=1, bias=False)
    with pytest.raises(SpecError, match="layer2.1.conv2"):
        ss.spec_from_model(model)


def test_register_a_user_family() -> None:
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self, spec: ArchSpec) -> None:
            super().__init__()
            self.hidden = nn.Linear(4, spec.widths["hidden"])
            self.out = nn.Linear(spec.widths["hidden"], spec.num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.hidden(x.flatten(1))))

    def read_widths(model: nn.Module) -> dict[str, int]:
        assert isinstance(model, Tiny)
        return {"hidden": model.hidden.out_features}

    fam = ss.ModelFamily(
        name="test_tiny_mlp",
        builder=Tiny,
        default_widths={"hidden": 8},
        input_shape=(1, 2, 2),
        num_classes=3,
        read_widths=read_widths,
    )
    ss.register_family(fam)
    spec = ss.default_spec("test_tiny_mlp").with_widths({"hidden": 5})
    model = ss.build(spec)
    assert ss.spec_from_model(model) == spec
    with pytest.raises(ValueError, match="already registered"):
        ss.register_family(ss.ModelFamily(**{**fam.__dict__}))
