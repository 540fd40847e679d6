"""Worker scripts and probes for the kill / concurrency tests (run in subprocesses)."""

from __future__ import annotations

import sqlite3
import textwrap
import time
from pathlib import Path
from typing import Any

import search_helpers as h

from nas.search_types import TrialContext, TrialResult

TESTS = str(Path(__file__).parent)
REPO = Path(__file__).parents[1]


def evaluate_slow(params: dict[str, Any], ctx: TrialContext, *, seconds: float = 1.0
                  ) -> TrialResult:
    """``search_helpers.evaluate`` that takes a while, so that a kill lands inside a trial."""
    time.sleep(seconds)
    return h.evaluate(params, ctx)


WORKER = textwrap.dedent("""
    import functools, sys
    sys.path.insert(0, {tests!r})
    import kill_helpers, search_helpers as h
    from nas.backends.optuna import run_optuna
    run_optuna(study_name="k", storage={storage!r}, objectives=h.OBJECTIVES, sample=h.sample,
               evaluate=functools.partial(kill_helpers.evaluate_slow, seconds={seconds}),
               n_trials={n_trials}, run_dir={run_dir!r}, sampler="random", seed={seed},
               resume=True)
""")


def worker_script(run_dir: Path, *, n_trials: int, storage: str | None = None,
                  seconds: float = 1.0, seed: int = 0) -> str:
    return WORKER.format(tests=TESTS, storage=storage, seconds=seconds, n_trials=n_trials,
                         run_dir=str(run_dir), seed=seed)


def trial_states(db: Path) -> list[tuple[int, str]]:
    """(number, state) of every trial in a SQLite study database, read-only; [] if none yet."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return [(int(n), str(s)) for n, s in
                    con.execute("select number, state from trials order by number")]
        finally:
            con.close()
    except sqlite3.Error:
        return []  # schema not created yet, or locked for a moment
