"""The Ray Tune engine on the live Optuna study: trials visible while they run, a driver
interrupted mid-trial, and a resume that continues the same study without reading a pickle."""

from __future__ import annotations

import functools
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import search_helpers as h

from nas.pareto import load_records
from nas.study import StudyExistsError
from nas.tracking import Tracker

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent("""
    import functools, sys
    sys.path.insert(0, {tests!r})
    import search_helpers as h
    from nas.backends.ray import run_ray
    run_ray(study_name="r", storage=None, objectives=h.OBJECTIVES, sample=h.sample,
            evaluate=functools.partial(h.evaluate_hanging_at, hang_at=1, marker={marker!r}),
            n_trials=3, run_dir={run_dir!r}, sampler="random", seed=0, num_cpus=2,
            max_concurrent_trials=1)
""")


class _Trap:
    """Unpickling this writes a file: proof that someone unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.path, "unpickled"))


def _interrupted_driver(run_dir: Path) -> list:
    """Run the search in a driver process, read the live study while trial 1 runs, Ctrl-C."""
    marker = run_dir / "hanging"
    script = DRIVER.format(tests=str(Path(__file__).parent), marker=str(marker),
                           run_dir=str(run_dir))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[1])
    try:
        deadline = time.time() + 180
        while not marker.exists():
            assert proc.poll() is None, "driver exited before reaching trial 1"
            assert time.time() < deadline, "driver never reached trial 1"
            time.sleep(0.2)
        time.sleep(1.0)  # the worker's start attrs are written before evaluate is called
        live = load_records(run_dir, "r")
        proc.send_signal(signal.SIGINT)  # Tune stops gracefully
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return live


def test_ray_search_live_interrupted_and_resumed_from_the_study(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    from nas.backends.ray import run_ray

    live = _interrupted_driver(tmp_path)
    # while trial 1 ran, the storage already held trial 0 finished and trial 1 running
    assert [(r.number, r.state) for r in live] == [(0, "COMPLETE"), (1, "RUNNING")]
    running = live[1].attrs["worker"]
    assert running["pid"] > 0 and running["host"] and running["node_id"]
    assert running["niceness"] == 0  # a locally started Ray runs its workers at nice 0
    first = optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert first.trials[0].duration is not None and first.trials[0].duration.total_seconds() > 0

    # whatever Tune pickled into the run dir is never read back: make every pickle a trap
    trap = tmp_path / "trap-fired"
    pickles = list((tmp_path / "ray").rglob("*.pkl"))
    assert pickles  # Tune still writes tuner.pkl & co.
    for p in pickles:
        p.write_bytes(pickle.dumps(_Trap(trap)))

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    tracker = Tracker(enabled=True, project="t", group="r", run_dir=tmp_path)
    seen: list = []
    kwargs: dict[str, Any] = dict(
        study_name="r", storage=None, objectives=h.OBJECTIVES, sample=h.sample,
        evaluate=functools.partial(h.evaluate_tracked, tracker=tracker, fail_at=3), n_trials=3,
        run_dir=tmp_path, sampler="random", seed=0, num_cpus=2, on_trial_end=seen.append,
    )
    with pytest.raises(StudyExistsError, match="--resume"):
        run_ray(**kwargs)
    study = run_ray(**(kwargs | {"resume": True}))
    assert study.metric_names == ["accuracy", "macs"]
    assert not trap.exists()

    records = load_records(tmp_path, "r")  # the same reader as for the Optuna backend
    # 1 was orphaned by the interrupted driver: failed and re-queued as 2; 3 fails for real
    assert [r.state for r in records] == ["COMPLETE", "FAIL", "COMPLETE", "FAIL"]
    orphan, retry, failed = records[1], records[2], records[3]
    assert "driver stopped" in orphan.attrs["error"]
    assert retry.attrs["retry_of"] == 1 and retry.params == orphan.params
    assert records[0].params == live[0].params
    assert len({tuple(r.params.values()) for r in records}) == 3
    assert sorted(r.number for r in seen) == [2, 3]

    assert set(retry.params) == set(h.WIDTH_RANGES) and retry.attrs["widths"] == retry.params
    assert 0.0 <= retry.values["accuracy"] <= 1.0 and retry.values["macs"] > 0
    assert retry.attrs["backend"] == "ray" and retry.attrs["worker"]["pid"] > 0
    assert Path(retry.attrs["trial_dir"], "arch.json").exists()
    assert "deliberate failure in trial 3" in failed.attrs["error"]
    assert "Traceback" in Path(failed.attrs["error_file"]).read_text()
    # the worker process logged its trial to W&B, offline, under the run dir
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1
