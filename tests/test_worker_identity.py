"""The worker record that tells a live worker from a reused pid (nas/backends/optuna.py):
with psutil installed the record carries the process start time, and a record whose pid now
belongs to a process started at another time is judged dead."""

from __future__ import annotations

import os
import subprocess
import sys

from nas.study import _worker_alive, this_worker


def test_the_record_has_a_start_time_and_a_reused_pid_is_dead() -> None:
    me = this_worker()
    assert me["pid"] == os.getpid() and isinstance(me["started"], float)
    assert _worker_alive(me)
    assert not _worker_alive({**me, "started": me["started"] - 3600.0})  # pid reused
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not _worker_alive({"pid": child.pid, "started": me["started"]})  # gone
