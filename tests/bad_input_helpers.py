"""Shared pieces of the malformed-input tests: a tiny valid config and a CLI runner."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from nas.cli import main

CONFIG: dict[str, Any] = {
    "name": "bad",
    "model": {"family": "small_cnn"},
    "data": {"name": "synthetic", "num_samples": 120, "input_shape": [1, 8, 8],
             "num_classes": 4, "batch_size": 32, "val_fraction": 0.2, "augment": False},
    "train": {"epochs": 1, "threads": 1},
    "prune": {"calib_images": 64, "calib_batch_size": 32, "calib_positions_per_image": 4},
    "finetune": {"epochs": 0, "threads": 1},
    "scratch": {"enabled": False},
    "search": {"backend": "optuna", "trials": 1, "sampler": "random", "accuracy": "pruned",
               "uniform_baseline": False},
    "wandb": {"enabled": False},
}


def config(**changes: Any) -> dict[str, Any]:
    """CONFIG with dotted-key changes (``{"search.trials": 0}``); None deletes the key."""
    cfg = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return cfg


def write_config(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(argv: Sequence[object], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and everything written to stdout / stderr (file descriptors, so nothing hides)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capfd.readouterr()
    return code, " ".join((out + err).split())


def assert_refused(code: int, text: str, *names: str) -> None:
    """Exit 2, one message, no traceback, and every name (file / field / flag) in it."""
    assert code == 2, text
    assert "Traceback" not in text, text
    for name in names:
        assert name in text, f"{name!r} not in: {text}"
