"""A real PostgreSQL server for the storage tests, started and stopped by a pytest fixture.

Debian's ``postgresql-NN`` server package puts ``initdb`` / ``pg_ctl`` under
``/usr/lib/postgresql/NN/bin``. The cluster is initialised in its own temp dir, listens on
127.0.0.1 at a free port (and a unix socket in that dir), trusts local connections, and is
stopped (``pg_ctl stop -m immediate``) and removed at teardown. PostgreSQL refuses to run as
root: under root (CI on a fresh clone) the dir is chowned to the ``postgres`` user and the
binaries run through ``runuser -u postgres --``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def server_bin_dir() -> Path | None:
    """The newest ``.../bin`` holding both ``initdb`` and ``pg_ctl``, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:  # a symlink on PATH: use the real bin dir (pg_ctl, postgres live there)
        candidates.insert(0, str(Path(on_path).resolve().parent))
    for c in candidates:
        if Path(c, "initdb").is_file() and Path(c, "pg_ctl").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    port: int
    data_dir: Path
    bin_dir: Path
    prefix: list[str]
    options: str = ""

    def url(self, db: str = "postgres") -> str:
        """The URL exactly as the README writes it (``postgresql://``: psycopg 3)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def createdb(self, name: str) -> str:
        """A fresh database (dropped first if a test made it before); returns its URL."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def restart(self, down_s: float = 0.0) -> None:
        """``pg_ctl stop -m fast`` then ``start``: every open connection is dropped and, for
        ``down_s`` seconds, new ones are refused (an administrator's restart, a failover);
        the server comes back on the same port with the same options."""
        import time

        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        # the server's output goes to the log file: a pipe would stay open in the new server
        log = self.data_dir.parent / "server.log"
        ctl = [*self.prefix, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir)]
        quiet = subprocess.DEVNULL
        subprocess.run([*ctl, "-m", "fast", "-w", "-t", "60", "stop"], check=True,
                       timeout=90, env=env, stdout=quiet, stderr=quiet)
        time.sleep(down_s)
        subprocess.run([*ctl, "-l", str(log), "-o", self.options, "-w", "-t", "60", "start"],
                       check=True, timeout=90, env=env, stdout=quiet, stderr=quiet)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bin_dir = server_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine: install "
                    "Debian's postgresql-15 to run the PostgreSQL storage tests")
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="entropic-nas-pg-"))
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser is missing (the server refuses root)")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    data = root / "data"
    port = _free_port()
    log = root / "server.log"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, timeout=120, env=env)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
    started = subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log),
                              "-o", opts, "-w", "-t", "60", "start"],
                             capture_output=True, text=True, timeout=90, env=env)
    if started.returncode != 0:
        text = log.read_text() if log.exists() else started.stderr
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {text[-2000:]}")
    try:
        yield PgServer(port, data, bin_dir, prefix, opts)
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60, env=env)
        shutil.rmtree(root, ignore_errors=True)
