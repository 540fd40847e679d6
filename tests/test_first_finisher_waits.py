"""Two workers on one study: the one that runs out of trials first waits until the other's
trial has ended before it returns (and writes the front, export and summary), so its results
hold every trial; if the other worker dies on its trial meanwhile, the waiting worker fails
and re-queues that trial and runs the retry itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kill_helpers import REPO, TESTS

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    import search_helpers as h
    from nas.backends.optuna import run_optuna

    def evaluate(params, ctx):
        if ctx.number == 0:  # the long trial
            print("long trial started", flush=True)
            time.sleep({long_s})
        return h.evaluate(params, ctx)

    study = run_optuna(study_name="w", storage={storage!r}, objectives=h.OBJECTIVES,
                       sample=h.sample, evaluate=evaluate, n_trials=2, run_dir={run_dir!r},
                       sampler="random", seed={seed}, resume=True)
    done = sum(t.state.name == "COMPLETE" for t in study.get_trials())
    print(f"returned with {{done}} complete", flush=True)
""")


def _start(run_dir: Path, storage: str, seed: int, long_s: float) -> subprocess.Popen[str]:
    code = SCRIPT.format(tests=TESTS, storage=storage, run_dir=str(run_dir), seed=seed,
                         long_s=long_s)
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 120) -> None:
    assert proc.stdout is not None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"never printed {text!r}")


def test_the_first_finisher_waits_for_the_others_trial(tmp_path: Path) -> None:
    storage = f"journal:{tmp_path / 'journal.log'}"
    slow = _start(tmp_path, storage, seed=0, long_s=20.0)  # long enough on a loaded machine
    _wait_for_line(slow, "long trial started")  # it holds trial 0
    fast = _start(tmp_path, storage, seed=1, long_s=20.0)  # runs trial 1, then must wait
    out_fast = fast.communicate(timeout=300)[0]
    out_slow = slow.communicate(timeout=300)[0]
    assert fast.returncode == 0 and slow.returncode == 0, out_fast + out_slow
    assert "returned with 2 complete" in out_fast, out_fast
    assert "waiting for 1 trial(s) still running in other workers" in out_fast
    assert "returned with 2 complete" in out_slow, out_slow


def test_a_waiting_worker_reruns_the_trial_of_a_worker_that_died(tmp_path: Path) -> None:
    storage = f"journal:{tmp_path / 'journal.log'}"
    doomed = _start(tmp_path, storage, seed=0, long_s=600.0)
    _wait_for_line(doomed, "long trial started")
    survivor = _start(tmp_path, storage, seed=1, long_s=0.0)  # its own trials are quick
    # the survivor finishes its trial and waits on the doomed one's; then that worker dies
    _wait_for_line(survivor, "waiting for 1 trial(s) still running in other workers")
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=30)
    out = survivor.communicate(timeout=300)[0]
    assert survivor.returncode == 0, out
    # trial 0 failed (its worker died), its retry ran here: two trials count as complete
    assert "returned with 2 complete" in out, out
