"""The Ray Tune engine: a real local Ray search, interrupted and resumed, mirrored into the
Optuna storage that `pareto` and `export` read."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import search_helpers as h

from nas.backends.optuna import StudyExistsError
from nas.pareto import load_records
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


def _interrupted_driver(run_dir: Path) -> None:
    """Run the search in a driver process and Ctrl-C it while trial 1 is running."""
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
        proc.send_signal(signal.SIGINT)  # Tune saves its state and stops gracefully
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ray_search_interrupted_resumed_and_mirrored(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from nas.backends.ray import run_ray

    _interrupted_driver(tmp_path)
    first = load_records(tmp_path, "r")
    assert [(r.number, r.state) for r in first] == [(0, "COMPLETE")]

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    tracker = Tracker(enabled=True, project="t", group="r", run_dir=tmp_path)
    seen: list = []
    kwargs: dict[str, Any] = dict(
        study_name="r", storage=None, objectives=h.OBJECTIVES, sample=h.sample,
        evaluate=functools.partial(h.evaluate_tracked, tracker=tracker, fail_at=1), n_trials=3,
        run_dir=tmp_path, sampler="random", seed=0, num_cpus=2, on_trial_end=seen.append,
    )
    with pytest.raises(StudyExistsError, match="--resume"):
        run_ray(**kwargs)
    study = run_ray(**(kwargs | {"resume": True}))
    assert study.metric_names == ["accuracy", "macs"]

    records = load_records(tmp_path, "r")  # the same reader as for the Optuna backend
    assert [r.state for r in records] == ["COMPLETE", "FAIL", "COMPLETE"]
    # the searcher's state survived the restore: trial numbers continue, no replayed proposal
    assert [r.attrs["ray_number"] for r in records] == [0, 1, 2]
    assert records[0].params == first[0].params
    assert len({tuple(r.params.values()) for r in records}) == 3
    assert sorted(r.number for r in seen) == [1, 2]

    ok, failed = records[2], records[1]
    assert set(ok.params) == set(h.WIDTH_RANGES) and ok.attrs["widths"] == ok.params
    assert 0.0 <= ok.values["accuracy"] <= 1.0 and ok.values["macs"] > 0
    assert ok.attrs["backend"] == "ray" and ok.attrs["worker"]["pid"] > 0
    assert Path(ok.attrs["trial_dir"], "arch.json").exists()
    assert "deliberate failure in trial 1" in failed.attrs["error"]
    assert "Traceback" in Path(failed.attrs["error_file"]).read_text()
    # the worker process logged its trial to W&B, offline, under the run dir
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1
