"""SIGTERM (what schedulers and `kill` send) is handled like Ctrl-C: one line, exit 143,
finished work kept, and --resume continues (pre-training from its last epoch)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
CONFIG = {
    "name": "term",
    "model": {"family": "small_cnn"},
    "data": {"name": "synthetic", "num_samples": 2000, "input_shape": [1, 8, 8],
             "num_classes": 4, "batch_size": 16, "val_fraction": 0.2, "augment": False},
    "train": {"epochs": 200, "lr": 0.05, "threads": 1},
    "search": {"trials": 1, "sampler": "random"},
    "wandb": {"enabled": False},
}


def test_sigterm_during_pretraining_is_an_interrupt_and_resumes(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", "--config", str(cfg),
                             "--out", str(out)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = out / "pretrained" / "state" / "last"
    deadline = time.time() + 240
    while not last.exists():
        assert proc.poll() is None, proc.communicate()[0][-2000:]
        assert time.time() < deadline, "pre-training never wrote an epoch"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, text[-2000:]
    assert "terminated (SIGTERM)" in text and "--resume" in text
    assert "Traceback" not in text
    assert last.exists()  # the finished epochs are kept for the resume
