"""The short public surface of ``nas``: every name resolves lazily, ``import nas`` does not pull
in torch, and ``nas.load_front`` reads a stored study's Pareto front."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest

import nas


def test_every_public_name_resolves() -> None:
    for name in nas.__all__:
        assert getattr(nas, name) is not None
    assert set(nas.__all__) <= set(dir(nas))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = nas.nope  # type: ignore[attr-defined]


def test_import_is_cheap() -> None:
    code = "import sys, nas; print('torch' in sys.modules, 'optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert out == ["False", "False"]


def test_load_front_of_a_stored_study(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=url,
                                directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "macs"])
    for acc, macs in [(0.9, 100.0), (0.8, 50.0), (0.7, 80.0), (0.95, 300.0)]:
        study.add_trial(optuna.trial.create_trial(values=[acc, macs]))
    front = nas.load_front(url, "s")
    assert [r.values["accuracy"] for r in front] == [0.95, 0.9, 0.8]  # (0.7, 80) dominated
    assert [o.name for o in nas.load_objectives(url, "s")] == ["accuracy", "macs"]
    rec = nas.pick_trial(nas.load_records(url, "s"), nas.load_objectives(url, "s"), "macs<=90")
    assert rec.values == {"accuracy": 0.8, "macs": 50.0}
