"""Malformed config files and fields: exit 2 naming the file / field, before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bad_input_helpers import assert_refused, config, run_cli, write_config

NAN, INF = float("nan"), float("inf")

# (id, config changes, names the message must contain)
BAD_FIELDS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("nan-eps_E", {"prune.eps_E": NAN}, ("prune.eps_E", "finite")),
    ("inf-eps_E", {"prune.eps_E": INF}, ("prune.eps_E",)),
    ("nan-eps_L2", {"prune.eps_L2": NAN}, ("prune.eps_L2",)),
    ("eps_E-out-of-range", {"prune.eps_E": 5.0}, ("prune.eps_E", "[-1, 1]")),
    ("zero-eps_L2", {"prune.eps_L2": 0.0}, ("prune.eps_L2", "> 0")),
    ("zero-min_channels", {"prune.min_channels": 0}, ("prune.min_channels", ">= 1")),
    ("space-eps_E-out-of-range", {"search.space.eps_E": {"low": -2.0, "high": 0.0}},
     ("search.space.eps_E", "low")),
    ("inf-lr", {"train.lr": INF}, ("train.lr",)),
    ("nan-range-low", {"search.space.eps_L2": {"low": NAN, "high": 1.0}},
     ("search.space.eps_L2.low",)),
    ("nan-range-high", {"search.space.tau": {"low": 0.01, "high": NAN}},
     ("search.space.tau.high",)),
    ("inf-range-high", {"search.space.eps_E": {"low": -1.0, "high": INF}},
     ("search.space.eps_E.high",)),
    ("range-as-list", {"search.space.eps_L2": [1.0, 0.1]},
     ("search.space.eps_L2", "{low: X, high: Y}", "got list")),
    ("section-as-scalar", {"search.space": 3}, ("search.space", "expected a mapping", "got int")),
    ("range-reversed", {"search.space.eps_L2": {"low": 1.0, "high": 0.1}},
     ("search.space.eps_L2", "low")),
    ("log-range-nonpositive", {"search.space.eps_L2": {"low": 0.0, "high": 1.0, "log": True}},
     ("search.space.eps_L2", "log")),
    ("empty-orders", {"search.space.orders": []}, ("search.space.orders",)),
    ("empty-selection", {"search.space.selection": []}, ("search.space.selection",)),
    ("empty-schedules", {"search.space.schedules": []}, ("search.space.schedules",)),
    ("unknown-order", {"search.space.orders": ["sideways"]}, ("search.space.orders",)),
    ("empty-scratch-variants", {"scratch.variants": []}, ("scratch.variants",)),
    ("negative-finetune-range", {"search.space.finetune_epochs": [-1, 2]},
     ("search.space.finetune_epochs",)),
    ("reversed-finetune-range", {"search.space.finetune_epochs": [3, 1]},
     ("search.space.finetune_epochs",)),
    ("negative-finetune-epochs", {"finetune.epochs": -1}, ("finetune.epochs",)),
    ("negative-train-epochs", {"train.epochs": -3}, ("train.epochs",)),
    ("zero-trials", {"search.trials": 0}, ("search.trials",)),
    ("negative-trials", {"search.trials": -2}, ("search.trials",)),
    ("prune-prob-over-1", {"search.space.prune_group_prob": 1.5},
     ("search.space.prune_group_prob",)),
    ("unknown-key", {"train.epoch": 3}, ("train.epoch", "unknown key")),
    ("unknown-section", {"serach": {"trials": 2}}, ("serach",)),
    ("unknown-family", {"model.family": "resnet9000"}, ("model.family",)),
    ("unknown-dataset", {"data.name": "imagenet"}, ("data.name",)),
    ("val-fraction-1", {"data.val_fraction": 1.0}, ("data.val_fraction",)),
    ("zero-batch", {"data.batch_size": 0}, ("data.batch_size",)),
    ("bad-input-shape", {"data.input_shape": [1, 0, 8]}, ("data.input_shape",)),
    ("missing-model", {"model": None}, ("model", "Field required")),
    ("name-with-slash", {"name": "../escape"}, ("name",)),
    ("bad-study-name", {"search.study_name": "a b"}, ("search.study_name",)),
    ("scratch-accuracy-without-scratch", {"search.accuracy": "scratch_e"},
     ("search.accuracy", "scratch")),
    ("finetuned-accuracy-without-finetuning", {"search.accuracy": "finetuned"},
     ("search.accuracy", "finetune.epochs")),
    ("finetuned-accuracy-range-from-0", {"search.accuracy": "finetuned", "finetune.epochs": 1,
                                         "search.space.finetune_epochs": [0, 2]},
     ("search.space.finetune_epochs",)),
    ("storage-in-config", {"search.storage": "notaurl"}, ("search.storage",)),
    ("section-not-mapping", {"train": [1, 2]}, ("train",)),
]


@pytest.mark.parametrize("changes,names", [c[1:] for c in BAD_FIELDS],
                         ids=[c[0] for c in BAD_FIELDS])
def test_bad_field_is_refused_before_any_work(tmp_path: Path, capfd, changes, names) -> None:
    cfg = write_config(tmp_path / "c.yaml", config(**changes))
    out = tmp_path / "run"
    code, text = run_cli(["search", "--config", cfg, "--out", out], capfd)
    assert_refused(code, text, str(cfg), *names)
    assert not out.exists()


def test_config_that_is_a_directory(tmp_path: Path, capfd) -> None:
    code, text = run_cli(["search", "--config", tmp_path, "--out", tmp_path / "r"], capfd)
    assert_refused(code, text, str(tmp_path), "directory")


def test_config_not_utf8(tmp_path: Path, capfd) -> None:
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes(b"name: caf\xe9\nmodel: {family: small_cnn}\n")
    code, text = run_cli(["train", "--config", cfg], capfd)
    assert_refused(code, text, str(cfg), "UTF-8")


def test_config_binary_garbage(tmp_path: Path, capfd) -> None:
    cfg = tmp_path / "garbage.yaml"
    cfg.write_bytes(bytes(range(256)))
    code, text = run_cli(["search", "--config", cfg], capfd)
    assert_refused(code, text, str(cfg))


def test_config_missing(tmp_path: Path, capfd) -> None:
    code, text = run_cli(["search", "--config", tmp_path / "nope.yaml"], capfd)
    assert_refused(code, text, "nope.yaml", "not found")


def test_config_invalid_yaml(tmp_path: Path, capfd) -> None:
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("name: [unclosed\n")
    code, text = run_cli(["search", "--config", cfg], capfd)
    assert_refused(code, text, str(cfg), "YAML")


def test_empty_yaml_plus_set(tmp_path: Path, capfd) -> None:
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("")
    code, text = run_cli(["search", "--config", cfg, "--set", "train.epochs=1"], capfd)
    assert_refused(code, text, str(cfg), "model", "Field required")


def test_top_level_list_plus_set(tmp_path: Path, capfd) -> None:
    cfg = tmp_path / "list.yaml"
    cfg.write_text("- 1\n- 2\n")
    code, text = run_cli(["search", "--config", cfg, "--set", "train.epochs=1"], capfd)
    assert_refused(code, text, str(cfg), "mapping")


@pytest.mark.parametrize("item,names", [
    ("train.epochs", ("--set", "KEY=VALUE")),
    ("=3", ("--set", "KEY=VALUE")),
    ("train..epochs=3", ("--set", "train..epochs")),
    ("train.epochs=[1, 2", ("--set", "train.epochs")),
    ("name.sub=3", ("--set", "name")),
    ("train.epochs=-1", ("train.epochs",)),
    ("prune.eps_E=.nan", ("prune.eps_E",)),
], ids=["no-equals", "no-key", "empty-part", "bad-yaml-value", "not-a-section",
        "negative-value", "nan-value"])
def test_bad_set_override(tmp_path: Path, capfd, item: str, names: tuple[str, ...]) -> None:
    cfg = write_config(tmp_path / "c.yaml", config())
    out = tmp_path / "run"
    code, text = run_cli(["search", "--config", cfg, "--out", out, "--set", item], capfd)
    assert_refused(code, text, *names)
    assert not out.exists()
