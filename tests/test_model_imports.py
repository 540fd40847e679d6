"""A family registered by the user's own module, named in the config (``model.imports``):
the CLI imports it before resolving the model, every trial process (Ray workers included)
imports it again, and a module that cannot be imported is refused by name, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bad_input_helpers import config

ROOT = Path(__file__).resolve().parents[1]



def _config(backend: str) -> dict:
    return config(**{"name": "imports",
                     "model": {"family": "users_tiny", "imports": ["users_families"]},
                     "data.input_shape": [3, 8, 8], "data.num_samples": 160,
                     "search.backend": backend, "search.trials": 2})


def _env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}


def _run(tmp_path: Path, cfg: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = _env()
    return subprocess.run([sys.executable, "-m", "nas.cli", "search", "--config", str(path),
                           "--out", str(tmp_path / "run"), "--no-wandb", *extra],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["optuna", "ray"])
def test_a_family_from_the_users_module_is_searched(tmp_path: Path, backend: str) -> None:
    proc = _run(tmp_path, _config(backend))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["trials"]["COMPLETE"] == 2
    arch = json.loads((tmp_path / "run" / "export" / "arch.json").read_text())
    assert arch["family"] == "users_tiny"
    card = (tmp_path / "run" / "export" / "MODEL_CARD.md").read_text()
    assert "entropic-nas train --config ../config.yaml --arch arch.json" in card
    assert str(tmp_path) not in card  # relative paths only
    if backend == "optuna":  # the card's retrain command runs as written, from the export
        retrain = subprocess.run(["entropic-nas", "train", "--config", "../config.yaml",
                                  "--arch", "arch.json", "--out", "retrain"],
                                 cwd=tmp_path / "run" / "export", env=_env(),
                                 capture_output=True, text=True, timeout=600)
        assert retrain.returncode == 0, retrain.stderr[-3000:]
    log = proc.stdout + proc.stderr  # one line per trial: ours, not also Optuna's INFO line
    assert "trial 1 complete" in log and "finished with value" not in log


@pytest.mark.slow
def test_on_a_two_node_cluster_every_worker_imports_the_module(ray_cluster, tmp_path: Path
                                                                ) -> None:
    cfg = _config("ray")
    cfg["search"]["trials"] = 2
    proc = _run(tmp_path, cfg, "--ray-address", ray_cluster.address)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["trials"]["COMPLETE"] == 2


def test_a_module_that_cannot_be_imported_is_named(tmp_path: Path) -> None:
    cfg = _config("optuna")
    cfg["model"]["imports"] = ["users_families", "no_such_module_here"]
    proc = _run(tmp_path, cfg)
    assert proc.returncode == 2, proc.stderr
    assert "model.imports" in proc.stderr and "no_such_module_here" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()
