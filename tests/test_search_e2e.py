"""The whole search, small and real: CLI -> pre-train -> 3 Optuna trials (sparsify,
fine-tune, scratch) -> uniform baseline -> Pareto files -> export -> W&B offline runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import search_spaces
from nas.cli import main
from nas.search_types import TrialRecord  # noqa: F401  (public type used by pareto/export)

CONFIG: dict[str, Any] = {
    "name": "e2e",
    "model": {"family": "small_cnn"},
    "data": {"name": "synthetic", "num_samples": 480, "input_shape": [1, 8, 8],
             "num_classes": 4, "batch_size": 32, "val_fraction": 0.2, "augment": False},
    "train": {"epochs": 3, "lr": 0.05, "threads": 1},
    "prune": {"calib_images": 300, "calib_batch_size": 64, "calib_positions_per_image": 8},
    "finetune": {"epochs": 1, "lr": 0.01, "threads": 1},
    "scratch": {"variants": ["E"]},
    "search": {"backend": "optuna", "trials": 3, "sampler": "random",
               "space": {"eps_L2": {"low": 0.01, "high": 1.0, "log": True},
                         "prune_group_prob": 1.0}},
    "wandb": {"enabled": True, "project": "entropic-nas-tests"},
}


@pytest.fixture
def offline_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.mark.slow
def test_search_end_to_end(tmp_path: Path, offline_wandb: None) -> None:
    cfg = tmp_path / "e2e.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "run"
    assert main(["search", "--config", str(cfg), "--out", str(out)]) == 0

    for name in ("config.yaml", "study.db", "pareto.csv", "pareto.json", "pareto.png",
                 "pareto.html", "summary.json", "pretrained/model.safetensors"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"]["COMPLETE"] == 3
    labels = [b["label"] for b in summary["baselines"]]
    assert labels[0].startswith("unpruned") and labels[1].startswith("uniform")

    pareto = json.loads((out / "pareto.json").read_text())
    assert len(pareto["trials"]) == 3
    trial = pareto["trials"][0]
    for key in ("acc_pruned", "acc_finetuned", "acc_scratch_e", "macs", "params", "widths"):
        assert key in json.dumps(trial), key

    export = out / "export"
    for name in ("arch.json", "weights.safetensors", "model.onnx", "MODEL_CARD.md"):
        assert (export / name).exists(), name
    spec = search_spaces.ArchSpec.load(export / "arch.json")
    model = search_spaces.build(spec)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(export / "weights.safetensors"))
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 4)
    assert summary["export"]["test_acc"] >= 0.0
    # the card holds the baselines and the verdict beside the exported architecture
    card = (export / "MODEL_CARD.md").read_text()
    assert "## Against the baselines" in card
    for b in summary["baselines"]:
        assert f"| {b['label']} |" in card
    assert summary["verdict"]["text"] in card

    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) >= 4  # one per trial + the summary run

    # pareto replot and export from storage work on the finished study
    storage = f"sqlite:///{out / 'study.db'}"
    assert main(["pareto", "--storage", storage, "--study", "e2e", "--out", str(tmp_path / "re")]) == 0
    assert (tmp_path / "re" / "pareto.png").exists()
    assert main(["export", "--storage", storage, "--study", "e2e", "--pick", "max-acc",
                 "--out", str(tmp_path / "exp2")]) == 0
    assert search_spaces.ArchSpec.load(tmp_path / "exp2" / "arch.json").family == "small_cnn"
    card2 = (tmp_path / "exp2" / "MODEL_CARD.md").read_text()  # baselines from summary.json
    assert all(f"| {b['label']} |" in card2 for b in summary["baselines"])
    number = int(card2.splitlines()[0].split(" - trial ")[1].split()[0])
    if number == summary["verdict"]["trial"]:  # the verdict is quoted only for its own trial
        assert summary["verdict"]["text"] in card2
    else:
        assert "**Verdict**" not in card2

    # train --arch retrains the exported architecture from scratch
    assert main(["train", "--config", str(cfg), "--arch", str(export / "arch.json"),
                 "--out", str(tmp_path / "retrain")]) == 0
    assert json.loads((tmp_path / "retrain" / "metrics.json").read_text())["summary"]["val_acc"] > 0


def test_invalid_config_fails_before_any_work(tmp_path: Path, capsys) -> None:
    bad = dict(CONFIG, search={**CONFIG["search"], "trials": 0})
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    out = tmp_path / "run"
    assert main(["search", "--config", str(cfg), "--out", str(out)]) == 2
    assert "search.trials" in capsys.readouterr().err
    assert not out.exists()


def test_search_without_val_split_fails_before_any_work(tmp_path: Path, capsys) -> None:
    """Selection is on validation only: no val split is an error, never a fallback to test."""
    bad = dict(CONFIG, data={**CONFIG["data"], "val_fraction": 0.0})
    cfg = tmp_path / "noval.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    out = tmp_path / "run"
    assert main(["search", "--config", str(cfg), "--out", str(out), "--no-wandb"]) == 2
    assert "data.val_fraction" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_ray_search_lands_in_the_same_storage(tmp_path: Path, offline_wandb: None) -> None:
    """The real trial under Ray Tune (local, 2 CPUs): same storage, pareto and export."""
    cfg = dict(CONFIG, name="e2eray",
               search={**CONFIG["search"], "backend": "ray", "trials": 2,
                       "max_concurrent_trials": 2},
               wandb={"enabled": False})
    path = tmp_path / "ray.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["search", "--config", str(path), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "ray"
    assert summary["trials"]["COMPLETE"] == 2
    assert (out / "export" / "arch.json").exists()
    pareto = json.loads((out / "pareto.json").read_text())
    assert all("acc_scratch_e" in json.dumps(t) for t in pareto["trials"])
