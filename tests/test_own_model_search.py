"""Search your own model: a trained nn.Module or a factory through nas.run_search (no
pre-training: the module's weights are the base), and trained weights named in the config
(model.weights: a torch state dict read with weights_only=True), refused by name when they
do not fit."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

import nas
from nas.cli import main
from nas.export import load_export

CONFIG: dict[str, Any] = {
    "name": "own",
    "model": {"family": "small_cnn"},
    "data": {"name": "synthetic", "num_samples": 320, "input_shape": [3, 8, 8],
             "num_classes": 4, "batch_size": 32, "val_fraction": 0.25, "augment": False},
    "train": {"epochs": 1, "lr": 0.05, "threads": 1},
    "prune": {"calib_images": 128, "calib_batch_size": 64, "calib_positions_per_image": 8},
    "finetune": {"epochs": 1, "lr": 0.01, "threads": 1},
    "scratch": {"enabled": False},
    "search": {"backend": "optuna", "trials": 1, "sampler": "random",
               "space": {"prune_group_prob": 1.0}},
    "wandb": {"enabled": False},
}


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                         nn.Conv2d(12, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


@pytest.mark.slow
def test_a_trained_module_is_searched_from_its_own_weights(tmp_path: Path) -> None:
    model = _net()
    with torch.no_grad():
        model[0].weight.mul_(3.0)  # type: ignore[operator]  # not what a fresh init gives
    before = copy.deepcopy(model.state_dict())
    cfg = nas.RunConfig.model_validate(CONFIG)
    summary = nas.run_search(cfg, tmp_path / "run", model=model, progress=False)
    assert summary["trials"]["COMPLETE"] == 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched
    base = json.loads((tmp_path / "run" / "pretrained" / "model.json").read_text())
    assert base["metrics"]["weights_from"].endswith("user_weights.safetensors")
    exported, spec = load_export(tmp_path / "run" / "export")
    assert spec.family.startswith("factory:<local>:torch.nn.modules.container.Sequential")
    assert spec.meta["source"]["library"] == "factory"
    assert exported(torch.zeros(2, 3, 8, 8)).shape == (2, 4)


def test_weights_that_do_not_fit_are_refused_by_name(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "w.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, bad)
    cfg = {**CONFIG, "model": {"torchvision": "resnet18", "weights": str(bad)},
           "data": {**CONFIG["data"], "input_shape": [3, 32, 32]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = main(["search", "--config", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "model.weights" in err and "does not fit the model" in err and "conv.weight" in err
    missing = {**cfg, "model": {"torchvision": "resnet18", "weights": str(tmp_path / "no.pt")}}
    path.write_text(yaml.safe_dump(missing))
    assert main(["search", "--config", str(path), "--out", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err
    assert "model.weights" in err and "not found" in err
    assert not (tmp_path / "run2" / "config.yaml").exists()  # refused before anything


def test_a_state_dict_file_loads_strictly_and_names_the_mismatch(tmp_path: Path) -> None:
    from nas.checkpoint import CheckpointError, load_weights_into

    good = _net()
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in good.state_dict().items()}}, path)
    fresh = nn.Sequential(*[copy.deepcopy(m) for m in _net()])
    for p in fresh.parameters():
        p.data.zero_()
    load_weights_into(fresh, path)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in good.state_dict().items())
    other = nn.Sequential(nn.Conv2d(3, 5, 3))
    with pytest.raises(CheckpointError, match=r"model.weights: .* does not fit the model"):
        load_weights_into(other, path)
    pickled = tmp_path / "obj.pt"
    torch.save({"net": good}, pickled)  # a pickled module, not a state dict
    with pytest.raises(CheckpointError, match="model.weights"):
        load_weights_into(fresh, pickled)
