"""Ray on a real two-node cluster (one host): trials spread over both nodes and land in the
user's Optuna storage while they run, with real times, node id, host and niceness."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import search_helpers as h

from nas.pareto import load_records

pytestmark = pytest.mark.slow


def test_trials_spread_over_two_nodes_and_land_in_the_storage(
        ray_cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nas.backends.ray import run_ray
    from nas.search import _Progress

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    progress = _Progress(4, h.OBJECTIVES, None, storage=storage, study="c")
    run_ray(study_name="c", storage=storage, objectives=h.OBJECTIVES, sample=h.sample,
            evaluate=h.evaluate, n_trials=4, run_dir=tmp_path, sampler="random", seed=0,
            ray_address=ray_cluster.address,  # no max_concurrent_trials: the cluster's 2 CPUs
            on_trial_end=progress)
    # a non-TTY log gets one line per finished trial, with the study's totals
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("trial ")]
    assert len(lines) == 4 and "study 4/4 done (4 complete" in lines[-1]
    records = load_records(storage, "c")
    assert [r.state for r in records] == ["COMPLETE"] * 4
    nodes = {r.attrs["worker"]["node_id"] for r in records}
    assert len(nodes) == 2, [r.attrs["worker"] for r in records]
    assert all(r.attrs["worker"]["host"] and r.attrs["worker"]["niceness"] == 0 for r in records)
    assert all(Path(r.attrs["trial_dir"], "arch.json").exists() for r in records)
    trials = optuna.load_study(study_name="c", storage=storage).trials
    assert all(t.duration is not None and t.duration.total_seconds() > 0 for t in trials)
    # two at once (the default concurrency is the cluster's CPUs): some trials overlap
    spans = sorted((t.datetime_start.timestamp(), t.datetime_complete.timestamp())
                   for t in trials if t.datetime_start and t.datetime_complete)
    assert len(spans) == 4 and any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))
