"""W&B tracking, really run offline (no key, no network), files checked on disk."""

from __future__ import annotations

import importlib
import json
import pickle
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nas.pareto import write_results
from nas.search_types import Objective, TrialRecord, TrialResult
from nas.tracking import Tracker, resolve_mode

OBJS = [Objective("accuracy", "maximize"), Objective("macs", "minimize")]


def wandb_records(path: Path) -> Iterator[Any]:
    """Records of an offline ``.wandb`` file (LevelDB-style log of protobuf records)."""
    # The generated protobuf module defines its message classes at import time, invisibly
    # to a type checker: treat it (and the records) as dynamic.
    pb: Any = importlib.import_module("wandb.proto.wandb_internal_pb2")

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        if pos + 7 + length > len(data):  # a record still being written
            return
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def finished_records(run_dir: Path, timeout: float = 60.0) -> list[Any]:
    """The run's records once its log holds the ``exit`` record.

    ``run.finish()`` returns before the wandb-core service has written the offline log
    (right after it the file may hold only its 7-byte header), so wait for the log to be
    complete instead of reading it at once.
    """
    deadline = time.monotonic() + timeout
    log = next(run_dir.glob("*.wandb"))
    last_size = -1
    while True:
        size = log.stat().st_size
        records = list(wandb_records(log))
        # under load the service may still append records (e.g. a coalesced summary) right
        # after `exit`: wait until the log has also stopped growing
        if size == last_size and any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        last_size = size
        assert time.monotonic() < deadline, f"{run_dir}: no exit record after {timeout:.0f} s"
        time.sleep(0.5)


def run_summary(run_dir: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for rec in finished_records(run_dir):
        if rec.WhichOneof("record_type") == "summary":
            # wandb-core may coalesce updates into items keyed by `nested_key` instead of `key`
            for item in rec.summary.update:
                key = item.key or ".".join(item.nested_key)
                if key:
                    out[key] = json.loads(item.value_json)
    return out


def record_types(run_dir: Path) -> set[str]:
    return {r.WhichOneof("record_type") for r in finished_records(run_dir)}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def test_no_key_and_no_mode_means_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE")
    assert resolve_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode() == "online"
    assert resolve_mode("disabled") == "disabled"


def test_disabled_tracker_is_a_picklable_no_op(tmp_path: Path) -> None:
    t = Tracker(enabled=False, project="p", entity=None, group="g", run_dir=tmp_path)
    assert t.log_trial(0, {}, TrialResult({"accuracy": 1.0, "macs": 1.0}, {})) is None
    assert t.log_summary([], OBJS, None) is None
    assert not (tmp_path / "wandb").exists()
    assert pickle.loads(pickle.dumps(t)).enabled is False


def _records() -> list[TrialRecord]:
    return [
        TrialRecord(0, "COMPLETE", {"accuracy": 0.9, "macs": 4e5}, {"eps": 0.1},
                    {"widths": {"conv1": 6, "fc1": 20}}),
        TrialRecord(1, "COMPLETE", {"accuracy": 0.8, "macs": 1e5}, {"eps": 0.3},
                    {"widths": {"conv1": 3, "fc1": 10}}),
        TrialRecord(2, "COMPLETE", {"accuracy": 0.7, "macs": 2e5}, {"eps": 0.4},
                    {"widths": {"conv1": 4, "fc1": 9}}),
        TrialRecord(3, "FAIL", {}, {"eps": 0.5}, {"error": "RuntimeError: boom"}),
    ]


def test_offline_trial_and_summary_runs_land_in_run_dir(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot = tmp_path / "widths.png"
    plt.figure(figsize=(2, 2))
    plt.bar(["conv1", "fc1"], [6, 20])
    plt.savefig(plot)
    plt.close()

    tracker = pickle.loads(pickle.dumps(  # as a Ray worker would get it
        Tracker(enabled=True, project="entropic-nas-test", entity=None, group="study-x",
                run_dir=tmp_path)))
    result = TrialResult({"accuracy": 0.9, "macs": 4e5},
                         {"acc_ft": 0.9, "timing": {"fit_s": 1.5}, "widths": {"conv1": 6}})
    trial_run = tracker.log_trial(0, {"eps": 0.1}, result, widths_plot_path=plot)
    assert trial_run is not None and trial_run.name.startswith("offline-run-")
    assert trial_run.parent == tmp_path / "wandb"
    summary = run_summary(trial_run)  # offline runs keep the summary in the .wandb log
    assert summary["accuracy"] == 0.9 and summary["macs"] == 4e5
    assert summary["state"] == "COMPLETE" and summary["timing.fit_s"] == 1.5 and summary["widths.conv1"] == 6
    assert list((trial_run / "files" / "media" / "images").glob("widths_*.png"))

    paths = write_results(_records(), OBJS, tmp_path / "pareto")
    spec = tmp_path / "export" / "arch.json"
    spec.parent.mkdir()
    spec.write_text('{"family": "small_cnn"}\n')
    summary_run = tracker.log_summary(_records(), OBJS, paths, arch_spec_path=spec)
    assert summary_run is not None and summary_run != trial_run
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2

    tables = list((summary_run / "files" / "media" / "table").glob("trials_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    cols = table["columns"]
    assert cols[:5] == ["trial", "state", "accuracy", "macs", "is_pareto"]
    assert [row[cols.index("is_pareto")] for row in table["data"]] == [True, True, False, False]
    assert "width.conv1" in cols
    files = {p.name for p in (summary_run / "files").rglob("*")}
    assert {"pareto.csv", "pareto.json"} <= files
    assert run_summary(summary_run)["pareto_trials"] == [0, 1]
    # the artifact is recorded in the run's log; offline, nothing is uploaded
    assert "artifact" in record_types(summary_run)
    art = next(r.artifact for r in finished_records(summary_run)
               if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "model")
    assert art.type == "model" and {e.path for e in art.manifest.contents} == {
        "arch.json"}
