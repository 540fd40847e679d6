"""A storage password never reaches disk: a search on a real PostgreSQL server with the
password in the URL (as a user may write it) leaves it in no file under the run directory,
the log directory or the W&B files, nor in its messages; ``${VAR}`` in the URL keeps it out
of the config as well."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from nas.cli import main

pytestmark = pytest.mark.slow
SECRET = "hunter2-s3cret"
CONFIG: dict[str, Any] = {"name": "pw", "model": {"family": "small_cnn"},
          "data": {"name": "synthetic", "num_samples": 240, "input_shape": [1, 8, 8],
                   "num_classes": 4, "batch_size": 32, "val_fraction": 0.25, "augment": False},
          "train": {"epochs": 1, "threads": 1},
          "prune": {"calib_images": 96, "calib_batch_size": 48, "calib_positions_per_image": 4},
          "finetune": {"epochs": 1, "threads": 1}, "scratch": {"enabled": False},
          "search": {"trials": 1, "sampler": "random"},
          "wandb": {"enabled": True, "project": "entropic-nas-tests"}}


def _files_holding(root: Path, needle: str) -> list[Path]:
    hits = []
    for f in root.rglob("*"):
        if f.is_file():
            try:
                if needle.encode() in f.read_bytes():
                    hits.append(f)
            except OSError:
                continue
    return hits


def test_a_password_in_the_url_is_written_nowhere(pg_server, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("ENTROPIC_NAS_LOG_DIR", str(tmp_path / "logs"))
    url = pg_server.createdb("pw").replace("postgres@", f"postgres:{SECRET}@")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "search": {**CONFIG["search"], "storage": url}}))
    out = tmp_path / "run"
    assert main(["search", "--config", str(cfg), "--out", str(out)]) == 0
    # the same study again without --resume: refused, naming the storage
    assert main(["search", "--config", str(cfg), "--out", str(out)]) == 2
    said = capsys.readouterr()
    assert SECRET not in said.out + said.err
    assert "***" in said.err
    assert _files_holding(out, SECRET) == []
    assert not (tmp_path / "logs").exists() or _files_holding(tmp_path / "logs", SECRET) == []


def test_a_password_from_the_environment(pg_server, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from nas.storage import StorageError, check_storage
    from nas.study import open_storage

    monkeypatch.setenv("NAS_DB_PASSWORD", SECRET)
    url = pg_server.createdb("pwenv").replace("postgres@", "postgres:${NAS_DB_PASSWORD}@")
    assert check_storage(url, tmp_path) == url  # opened with the variable expanded
    open_storage(url).get_all_studies()
    monkeypatch.delenv("NAS_DB_PASSWORD")
    with pytest.raises(StorageError, match="NAS_DB_PASSWORD"):
        check_storage(url, tmp_path)
