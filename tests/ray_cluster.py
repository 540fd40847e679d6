"""A local two-node Ray cluster for the cluster tests, started and stopped by a fixture.

``ray start --head --block`` and ``ray start --address --block`` run as child processes of the
test session, each in its own temp dir and process group, with one CPU per node, on 127.0.0.1
at a free port; teardown stops them by their PIDs (SIGTERM: a blocking ``ray start`` stops the
processes it started) and then kills whatever is left in their process groups. ``ray stop`` is
never used (it would stop every Ray on the machine). Nodes run with ``RAY_worker_niceness=0``,
as the README tells cluster users to start theirs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

WAIT_NODES = textwrap.dedent("""
    import sys, time, ray
    ray.init(address=sys.argv[1], log_to_driver=False)
    deadline = time.time() + 90
    while len([n for n in ray.nodes() if n["Alive"]]) < int(sys.argv[2]):
        assert time.time() < deadline, f"only {ray.nodes()} after 90 s"
        time.sleep(0.5)
""")


@dataclass
class RayCluster:
    address: str
    temp_dir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=30)
        # leftovers of this node only: its own process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        if p.poll() is None:
            p.wait(timeout=10)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    repo = Path(__file__).resolve().parents[1]
    temp = Path(tempfile.mkdtemp(prefix="enas-ray-", dir="/tmp"))  # short: socket paths
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_worker_niceness": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(repo / "tests"), str(repo),
                                          os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    ray_cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus=1",
               "--num-gpus=0", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    procs: list[subprocess.Popen] = []
    logs = [open(temp / name, "w") for name in ("head.log", "worker.log")]  # noqa: SIM115
    try:
        procs.append(subprocess.Popen(
            [*ray_cmd, "--head", f"--port={port}", f"--temp-dir={temp}",
             "--include-dashboard=false"],
            env=env, stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.time() + 90
        while True:
            assert procs[0].poll() is None, (temp / "head.log").read_text()[-3000:]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.time() < deadline, "the Ray head did not open its port in 90 s"
            time.sleep(0.5)
        procs.append(subprocess.Popen(
            [*ray_cmd, f"--address={address}"],
            env=env, stdout=logs[1], stderr=subprocess.STDOUT, start_new_session=True))
        subprocess.run([sys.executable, "-c", WAIT_NODES, address, "2"], env=env, check=True,
                       timeout=120, capture_output=True)
        yield RayCluster(address, temp)
    finally:
        _stop(procs)
        for f in logs:
            f.close()
        shutil.rmtree(temp, ignore_errors=True)
