"""Depth (pruning/depth.py, the generic spec's ``dropped``, the search's drop_block_prob):
residual blocks with an identity shortcut are found by a check, removed whole, carried by the
spec through build, read-back, JSON and export, and searched per block."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from bad_input_helpers import config
from torch import nn

import nas
import pruning
import search_spaces
from nas.export import load_export
from search_spaces import ArchSpec, SpecError
from search_spaces.generic import family_for
from search_spaces.space import SearchSpace, decode_params, sample_params

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # T < d on tiny calibration


class Residual(nn.Module):
    def __init__(self, c: int, project: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c))
        self.proj = nn.Conv2d(c, c, 1) if project else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((self.proj(x) if self.proj is not None else x) + self.body(x))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.a = Residual(8)
        self.b = Residual(8, project=True)  # a projection shortcut: not removable
        self.plain = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())  # no shortcut
        self.c = Residual(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c(self.plain(self.b(self.a(self.stem(x)))))
        return self.head(x.mean((2, 3)))


def test_only_identity_shortcut_blocks_are_removable() -> None:
    torch.manual_seed(0)
    assert pruning.removable_blocks(Net(), torch.randn(2, 3, 8, 8)) == ["a", "c"]
    tv = torchvision.models.resnet18(num_classes=10)
    assert pruning.removable_blocks(tv, torch.randn(2, 3, 32, 32)) == [
        "layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    assert pruning.removable_blocks(torchvision.models.vgg11(num_classes=10),
                                    torch.randn(1, 3, 32, 32)) == []


def test_a_removed_block_is_the_block_with_its_branch_zeroed() -> None:
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(4, 3, 8, 8)
    zeroed = copy.deepcopy(net)
    with torch.no_grad():
        for p in zeroed.c.parameters():
            p.zero_()
    dropped = pruning.drop_blocks(net, ["c"])
    assert isinstance(dropped.c, nn.Identity) and isinstance(net.c, Residual)  # a copy
    assert torch.allclose(dropped(x), zeroed(x), atol=1e-6)
    assert pruning.dropped_blocks(dropped, ["a", "c"]) == ["c"]


def test_block_errors_rank_a_dead_branch_first() -> None:
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        last_bn = net.a.body[4]
        assert isinstance(last_bn, nn.BatchNorm2d)
        last_bn.weight.zero_()  # zero-init last BN: the block is an identity already
        last_bn.bias.zero_()
    errs = pruning.block_drop_errors(net, [torch.randn(8, 3, 8, 8) for _ in range(2)], ["a", "c"])
    assert errs["a"] == pytest.approx(0.0, abs=1e-12) and errs["c"] > 1e-4


@pytest.fixture(scope="module")
def resnet_family() -> str:
    return family_for("torchvision", "resnet18", {"num_classes": 10}, input_shape=(3, 32, 32)).name


def test_the_spec_carries_removed_blocks(resnet_family: str, tmp_path: Path) -> None:
    fam = search_spaces.get_family(resnet_family)
    assert fam.blocks == ("layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1")
    full = search_spaces.default_spec(fam.name)
    spec = full.scaled(0.5).with_dropped(["layer3.1", "layer1.1"])
    assert spec.dropped == ("layer1.1", "layer3.1")  # the family's order
    model = search_spaces.build(spec).eval()
    assert isinstance(model.get_submodule("layer3.1"), nn.Identity)
    assert search_spaces.spec_from_model(model) == spec
    assert ArchSpec.from_dict(spec.to_dict()) == spec
    assert ArchSpec.from_dict({**spec.to_dict(), "dropped": ["layer3.1", "layer1.1"]}) == spec
    assert "dropped" not in full.to_dict()  # specs without depth stay as they were
    macs = pruning.count_macs(model, (3, 32, 32))
    assert macs < pruning.count_macs(search_spaces.build(full.scaled(0.5)), (3, 32, 32))
    with pytest.raises(SpecError, match=r"dropped\[0\]: 'layer2.0' is not a removable block"):
        full.with_dropped(["layer2.0"])
    # export (arch.json + safetensors) -> rebuild: same outputs
    from nas.export import save_weights

    (tmp_path / "exp").mkdir()
    spec.save(tmp_path / "exp" / "arch.json")
    save_weights(model, tmp_path / "exp" / "weights.safetensors", spec)
    rebuilt, back = load_export(tmp_path / "exp")
    assert back == spec
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(rebuilt.eval()(x), model(x), atol=1e-5)


def test_the_sampler_drops_blocks_with_the_probability(resnet_family: str) -> None:
    import optuna

    fam = search_spaces.get_family(resnet_family)
    space = SearchSpace(groups=(), blocks=fam.blocks, drop_block_prob=0.5)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    counts = {b: 0 for b in fam.blocks}
    for _ in range(40):
        tp = decode_params(sample_params(study.ask(), space), space)
        for b in tp.dropped:
            counts[b] += 1
    assert all(8 <= n <= 32 for n in counts.values()), counts
    never = SearchSpace(groups=(), blocks=fam.blocks)  # drop_block_prob 0: depth is fixed
    params: dict[str, Any] = sample_params(study.ask(), never)
    assert decode_params(params, never).dropped == () and not any("drop." in k for k in params)


@pytest.mark.slow
def test_a_search_removes_blocks_and_exports_them(tmp_path: Path) -> None:
    cfg = nas.RunConfig.model_validate(config(**{
        "name": "depth", "model": {"family": "small_cnn"},  # replaced by run_search's module
        "data.num_samples": 192, "data.input_shape": [3, 8, 8], "data.num_classes": 5,
        "search.space": {"prune_group_prob": 1.0, "drop_block_prob": 1.0}}))
    torch.manual_seed(0)
    summary = nas.run_search(cfg, tmp_path / "run", model=Net(), progress=False)
    assert summary["trials"]["COMPLETE"] == 1
    model, spec = load_export(tmp_path / "run" / "export")
    assert spec.dropped == ("a", "c")
    assert isinstance(model.get_submodule("a"), nn.Identity)
    assert isinstance(model.get_submodule("b"), Residual)
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 5)


def test_the_prune_job_removes_the_weakest_blocks(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import yaml

    from nas.checkpoint import save_checkpoint
    from nas.cli import main
    from search_spaces.generic import register_callable

    fam = search_spaces.get_family(register_callable(Net), (3, 8, 8))
    assert fam.blocks == ("a", "c")
    spec = search_spaces.default_spec(fam.name, num_classes=5)
    torch.manual_seed(0)
    model = search_spaces.build(spec)
    with torch.no_grad():
        last_bn = model.get_submodule("c.body.4")
        assert isinstance(last_bn, nn.BatchNorm2d)
        last_bn.weight.zero_()  # block c does nothing: the one to remove
        last_bn.bias.zero_()
    ck = save_checkpoint(tmp_path / "base", model, spec)
    cfg = {"name": "depth", "model": {"factory": "test_depth:Net"},
           "data": {"name": "synthetic", "num_samples": 200, "input_shape": [3, 8, 8],
                    "num_classes": 5, "batch_size": 32, "val_fraction": 0.2, "augment": False},
           "prune": {"calib_images": 128, "calib_batch_size": 64, "calib_positions_per_image": 8,
                     "drop_blocks": 1, "target_macs": 0.6, "selection": "greedy",
                     "plan": "greedy"},
           "finetune": {"epochs": 0}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["prune", "--config", str(path), "--checkpoint", str(ck), "--out", str(out)]) == 0
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary["dropped_blocks"] == ["c"] and summary["block_errors"]["c"] < 1e-12
    assert summary["budget"]["selection"] == "GreedyReconstruction"
    assert summary["budget"]["plan"] == "greedy"
    assert summary["macs_ratio"] == pytest.approx(0.6, rel=0.05)
    assert ArchSpec.load(out / "arch.json").dropped == ("c",)
    capsys.readouterr()
    assert main(["prune", "--config", str(path), "--checkpoint", str(ck), "--out",
                 str(tmp_path / "out2"), "--set", "prune.drop_blocks=3"]) == 2
    assert "prune.drop_blocks=3" in capsys.readouterr().err
