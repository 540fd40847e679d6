"""A user's own training loop: nas.run_search(..., train_fn=, evaluate_fn=) sends every
pre-training, fine-tune, Scratch-E and uniform baseline through train_fn, and every accuracy
the search records comes from evaluate_fn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from search_helpers import synthetic_data
from torch import nn

import nas
from nas.pareto import load_records

pytestmark = pytest.mark.slow

CONFIG: dict[str, Any] = {
    "name": "own_loop", "model": {"family": "small_cnn"},
    "data": {"name": "synthetic", "num_samples": 200, "input_shape": [1, 8, 8],
             "num_classes": 10, "batch_size": 32, "val_fraction": 0.25, "augment": False},
    "train": {"epochs": 2}, "prune": {"calib_images": 96, "calib_batch_size": 48,
                                      "calib_positions_per_image": 4},
    "finetune": {"epochs": 1}, "scratch": {"variants": ["E"]},
    "search": {"trials": 2, "sampler": "random"}, "wandb": {"enabled": False},
}


def test_every_training_and_accuracy_goes_through_the_users_functions(tmp_path: Path) -> None:
    xtr, ytr, xte, yte = synthetic_data()
    calls: list[int] = []
    seen: list[float] = []

    def train_fn(model: nn.Module, epochs: int) -> nn.Module:
        calls.append(epochs)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for step in range(10 * epochs):
            idx = torch.arange(step * 32, step * 32 + 32) % len(xtr)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
        return model.eval()

    def evaluate_fn(model: nn.Module) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            acc = float((model(xte).argmax(1) == yte).float().mean())
        seen.append(acc)
        return {"accuracy": acc}

    cfg = nas.RunConfig.model_validate(CONFIG)
    summary = nas.run_search(cfg, tmp_path / "run", train_fn=train_fn, evaluate_fn=evaluate_fn,
                             progress=False)
    assert summary["trials"]["COMPLETE"] == 2
    # pre-training (2 epochs), per trial a fine-tune (1) and Scratch-E (2), the uniform net (2)
    assert calls[0] == 2 and calls.count(1) == 2 and len(calls) == 1 + 2 * 2 + 1
    records = load_records(f"sqlite:///{tmp_path / 'run' / 'study.db'}", "own_loop")
    for r in records:
        assert r.values["accuracy"] in seen
        assert r.attrs["acc_pruned"] in seen


def test_train_fn_alone_is_refused(tmp_path: Path) -> None:
    cfg = nas.RunConfig.model_validate(CONFIG)
    with pytest.raises(TypeError, match="evaluate_fn"):
        nas.run_search(cfg, tmp_path / "run", train_fn=lambda m, e: m)
