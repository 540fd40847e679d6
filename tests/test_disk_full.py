"""A full disk while a search writes: one clear message, the trial FAIL with the reason, resume.

A real full file system (a small tmpfs; needs root, else skipped) and an injected
``OSError(ENOSPC)`` at the trial's write boundary.
"""

from __future__ import annotations

import errno
import functools
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import search_helpers as h
from bad_input_helpers import run_cli

from nas.backends.optuna import DiskError, run_optuna
from nas.pareto import load_records
from nas.search_types import TrialContext, TrialResult


def evaluate_disk_full_at(params: dict[str, Any], ctx: TrialContext, *, at: int) -> TrialResult:
    if ctx.number == at:
        path = ctx.trial_dir / "model.pt"
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return h.evaluate(params, ctx)


def _run(run_dir: Path, n: int, evaluate: Any = h.evaluate, storage: str | None = None,
         resume: bool = False) -> None:
    run_optuna(study_name="d", storage=storage, objectives=h.OBJECTIVES, sample=h.sample,
               evaluate=evaluate, n_trials=n, run_dir=run_dir, sampler="random", seed=0,
               resume=resume)


def _check_failed_then_resumed(run_dir: Path, url: str, storage: str | None) -> None:
    records = load_records(url, "d")
    assert [r.state for r in records] == ["COMPLETE", "FAIL"]
    failed = records[1]
    assert "No space left on device" in failed.attrs["error"] and failed.attrs["requeue"]
    _run(run_dir, 3, storage=storage, resume=True)
    records = load_records(url, "d")
    assert [r.state for r in records] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert records[2].params == failed.params and records[2].attrs["retry_of"] == 1


def test_injected_enospc_fails_the_trial_stops_and_resumes(tmp_path: Path) -> None:
    evaluate = functools.partial(evaluate_disk_full_at, at=1)
    with pytest.raises(DiskError, match="trial 1: No space left on device while writing"):
        _run(tmp_path, 3, evaluate)
    _check_failed_then_resumed(tmp_path, f"sqlite:///{tmp_path / 'study.db'}", None)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (root only)."""
    mnt = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs",
                                            str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("needs root and tmpfs to make a small file system")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_real_full_disk_under_the_trials(tmp_path: Path, small_fs: Path) -> None:
    """Trial files on a full disk, the study elsewhere: FAIL with the reason, then resume."""
    run_dir = small_fs / "run"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _run(run_dir, 1, storage=storage)
    (run_dir / "trials" / "1").mkdir(parents=True)  # the dir entry itself needs no free block
    filler = _fill(small_fs)
    with pytest.raises(DiskError, match="No space left on device"):
        _run(run_dir, 3, storage=storage, resume=True)
    filler.unlink()
    _check_failed_then_resumed(run_dir, storage, storage)


def test_real_full_disk_under_the_study_db(tmp_path: Path, small_fs: Path, capfd) -> None:
    """The study database on the full disk: the error is recognised as a disk error; resume."""
    run_dir = small_fs / "run"
    _run(run_dir, 1)
    filler = _fill(small_fs)
    with pytest.raises(Exception) as info:  # noqa: PT011 - Optuna's own storage error
        _run(run_dir, 3, resume=True)
    from nas.backends.optuna import disk_error

    assert disk_error(info.value) is not None
    filler.unlink()
    _run(run_dir, 3, resume=True)
    assert [r.state for r in load_records(run_dir, "d")].count("COMPLETE") == 3


def test_cli_full_disk_is_one_line_exit_1(tmp_path: Path, small_fs: Path, capfd,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTROPIC_NAS_LOG_DIR", str(tmp_path / "logs"))
    _run(tmp_path / "run", 2)
    _fill(small_fs)
    code, text = run_cli(["pareto", "--storage", tmp_path / "run", "--study", "d",
                          "--out", small_fs / "plots"], capfd)
    assert code == 1, text
    assert "Traceback" not in text
    assert "No space left on device" in text and "free space" in text
    assert str(tmp_path / "logs") in text
