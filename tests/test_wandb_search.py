"""W&B a user would open: the offline run files of a real small search, read back with
wandb's own protobuf records (see test_tracking.wandb_records), hold per-trial runs with
per-epoch fine-tune and scratch curves, numeric widths, the pruning table, failed trials,
and one summary run (updated on resume) with baselines, the Pareto table and the model."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import search_helpers as h
import yaml
from test_tracking import finished_records

from nas.cli import main
from nas.search_types import TrialContext
from nas.tracking import Tracker, tracked_evaluate

CONFIG: dict[str, Any] = {
    "name": "wb",
    "model": {"family": "small_cnn"},
    "data": {"name": "synthetic", "num_samples": 240, "input_shape": [1, 8, 8],
             "num_classes": 4, "batch_size": 32, "val_fraction": 0.25, "augment": False},
    "train": {"epochs": 2, "lr": 0.05, "threads": 1},
    "prune": {"calib_images": 120, "calib_batch_size": 60, "calib_positions_per_image": 4},
    "finetune": {"epochs": 2, "lr": 0.01, "threads": 1},
    "scratch": {"variants": ["E"]},
    "search": {"backend": "optuna", "trials": 2, "sampler": "random",
               "space": {"eps_L2": {"low": 0.05, "high": 1.0, "log": True},
                         "prune_group_prob": 1.0}},
    "wandb": {"enabled": True, "project": "entropic-nas-tests", "tags": ["nightly"]},
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def _read(run_dir: Path) -> dict[str, Any]:
    """run info, config, summary, history rows and artifacts of one offline run."""
    out: dict[str, Any] = {"config": {}, "summary": {}, "history": [], "artifacts": []}
    for rec in finished_records(run_dir):
        kind = rec.WhichOneof("record_type")
        if kind == "run":  # the initial config comes with the run record
            out["run"] = rec.run
            for item in rec.run.config.update:
                out["config"][item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                out["config"][item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "summary":
            for item in rec.summary.update:
                out["summary"][item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({(i.key or ".".join(i.nested_key)): json.loads(i.value_json)
                                   for i in rec.history.item})
        elif kind == "artifact":
            out["artifacts"].append(rec.artifact)
    return out


def _runs(out: Path) -> list[dict[str, Any]]:
    return [_read(d) | {"dir": d} for d in sorted((out / "wandb").glob("offline-run-*"))]


@pytest.mark.slow
def test_search_runs_hold_curves_tables_baselines_and_the_model(tmp_path: Path) -> None:
    cfg = tmp_path / "wb.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "run"
    assert main(["search", "--config", str(cfg), "--out", str(out)]) == 0
    assert main(["search", "--config", str(cfg), "--out", str(out), "--resume",
                 "--trials", "3"]) == 0

    runs = _runs(out)
    trials = [r for r in runs if r["run"].job_type == "trial"]
    summaries = [r for r in runs if r["run"].job_type == "summary"]
    assert sorted(r["config"]["trial"] for r in trials) == [0, 1, 2]
    # one summary run, updated on resume (same id), not a second one
    assert len(summaries) == 2 and len({s["run"].run_id for s in summaries}) == 1
    group = trials[0]["run"].run_group
    assert group.startswith("wb-") and len(group) > 3  # unique to the study, not bare "wb"
    assert all(r["run"].run_group == group for r in runs)
    assert {"small_cnn", "synthetic", "optuna", "nightly"} <= set(trials[0]["run"].tags)

    t = trials[0]
    curves = [row for row in t["history"] if "finetune/val_acc" in row]
    assert [row["finetune/epoch"] for row in curves] == [1, 2]
    scratch = [row for row in t["history"] if "scratch_e/val_acc" in row]
    assert [row["scratch_e/epoch"] for row in scratch] == [1, 2]
    widths = {k: v for k, v in t["config"].items() if k.startswith("width.")}
    assert widths and all(isinstance(v, int) for v in widths.values())
    assert any(k.startswith("pruning_layers.") for row in t["history"] for k in row)
    tables = list((t["dir"] / "files" / "media" / "table").glob("pruning_layers_*.table.json"))
    layer_table = json.loads(tables[0].read_text())
    assert len(layer_table["data"]) >= 1 and "layer" in json.dumps(layer_table["columns"])
    assert t["summary"]["state"] == "COMPLETE" and "accuracy" in t["summary"]

    last = summaries[-1]
    assert last["summary"]["n_trials"] == 3
    assert any(k.startswith("baseline/unpruned") for k in last["summary"])
    assert any(k.startswith("baseline/uniform") for k in last["summary"])
    trials_table = next((last["dir"] / "files" / "media" / "table").glob("trials_*.table.json"))
    assert "is_pareto" in json.loads(trials_table.read_text())["columns"]
    assert any(k.startswith("pareto_scatter") for row in last["history"] for k in row)
    art = next(a for a in last["artifacts"] if a.type == "model")
    assert {"arch.json", "weights.safetensors", "model.onnx", "MODEL_CARD.md"} <= {
        e.path for e in art.manifest.contents}
    assert "pick-knee" in list(art.aliases)


def test_failed_and_rejected_trials_get_runs_with_state_and_reason(tmp_path: Path) -> None:
    tracker = Tracker(enabled=True, project="p", group="g-1", run_dir=tmp_path)
    ctx = TrialContext(5, tmp_path / "trials" / "5", tmp_path, "optuna")
    ctx.trial_dir.mkdir(parents=True)
    failing = functools.partial(h.evaluate_failing_at, fail_at=5)
    with pytest.raises(RuntimeError, match="deliberate"):
        tracked_evaluate({"conv1": 3, "conv2": 3, "conv3": 3, "fc1": 3}, ctx, evaluate=failing,
                         tracker=tracker)
    rejecting = functools.partial(h.evaluate, macs_budget=1.0)
    ctx6 = TrialContext(6, tmp_path / "trials" / "6", tmp_path, "optuna")
    ctx6.trial_dir.mkdir(parents=True)
    from nas.search_types import RejectTrial

    with pytest.raises(RejectTrial):
        tracked_evaluate({"conv1": 3, "conv2": 3, "conv3": 3, "fc1": 3}, ctx6,
                         evaluate=rejecting, tracker=tracker)
    runs = {r["config"]["trial"]: r for r in _runs(tmp_path)}
    assert runs[5]["summary"]["state"] == "FAIL"
    assert "deliberate failure in trial 5" in runs[5]["summary"]["error"]
    assert runs[6]["summary"]["state"] == "PRUNED" and "budget" in runs[6]["summary"]["rejected"]
