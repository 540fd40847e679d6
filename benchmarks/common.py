"""Shared plumbing of the engine benchmarks: environment header, CLI, timers, JSON writer.

Every benchmark prints one header line (device, torch threads, CPU count, torch/torchvision
versions, load average) and writes ``benchmarks/results/NAME.json`` after every row, so a
killed run keeps what it measured. Timings on CUDA are bracketed by
``torch.cuda.synchronize`` (see :class:`Timer`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

if str(ROOT) not in sys.path:  # `python benchmarks/NAME.py` from anywhere
    sys.path.insert(0, str(ROOT))


def load_average() -> list[float] | None:
    """1/5/15-minute load average (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "pruning"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty(pruning)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(dev: torch.device) -> dict[str, Any]:
    """What a reader needs to compare timings: device, threads, CPUs, versions, load."""
    try:
        import torchvision

        tv = torchvision.__version__
    except ImportError:  # pragma: no cover
        tv = None
    return {
        "device": device_name(dev),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torchvision": tv,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load_average(),
        "git": _git_commit(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def header(env: dict[str, Any]) -> str:
    return (f"device={env['device']} | torch threads={env['torch_threads']} | "
            f"CPUs={env['cpu_count']} | torch {env['torch']} | torchvision {env['torchvision']}"
            f" | load avg {env['load_average']} | git {env['git']}")


def parser(name: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"benchmarks/{name}.py", description=description)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--out", type=Path, default=None,
                   help=f"JSON result file (default benchmarks/results/{name}.json, "
                        f"{name}_quick.json with --quick)")
    p.set_defaults(bench_name=name)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda ...")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads before anything runs (default: torch's)")
    return p


def setup(args: argparse.Namespace) -> tuple[torch.device, dict[str, Any]]:
    """Threads, device, ``args.out`` default; prints and returns the environment."""
    if getattr(args, "out", None) is None:
        suffix = "_quick" if getattr(args, "quick", False) else ""
        args.out = RESULTS / f"{args.bench_name}{suffix}.json"
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dev = pick_device(args.device)
    env = environment(dev)
    from rich.console import Console

    Console().print(f"[bold]{header(env)}[/]")
    return dev, env


def sync(dev: torch.device | str | None = None) -> None:
    if torch.cuda.is_available() and (dev is None or torch.device(dev).type == "cuda"):
        torch.cuda.synchronize()


class Timer:
    """Accumulates wall time per key; synchronises CUDA around each timed block."""

    def __init__(self, dev: torch.device) -> None:
        self.dev = dev
        self.totals: dict[str, float] = {}
        self._depth = 0

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        t0 = time.perf_counter()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self.dev.type == "cuda":
                torch.cuda.synchronize(self.dev)
            self.totals[key] = self.totals.get(key, 0.0) + time.perf_counter() - t0


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.device):
        return str(obj)
    return obj


class ResultWriter:
    """``{"benchmark", "command", "environment", "config", "rows", "summary"}`` on disk,
    rewritten atomically after every change."""

    def __init__(self, path: Path, name: str, env: dict[str, Any], config: dict[str, Any]) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = {
            "benchmark": name,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "environment": env,
            "config": config,
            "rows": [],
            "summary": {},
            "complete": False,
        }
        self.save()

    def add_row(self, row: dict[str, Any]) -> None:
        row = {**row, "load_average": load_average()}
        self.data["rows"].append(row)
        self.save()

    def set(self, key: str, value: Any) -> None:
        self.data["summary"][key] = value
        self.save()

    def finish(self) -> None:
        self.data["complete"] = True
        self.data["environment"]["load_average_end"] = load_average()
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(_clean(self.data), indent=2) + "\n")
        tmp.replace(self.path)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[fmt(v) for v in r])
    Console(width=max(200, Console().width)).print(t)


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        if abs(v) >= 0.01:
            return f"{v:.3f}"
        return f"{v:.2e}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def console_print(msg: str) -> None:
    from rich.console import Console

    Console().print(msg, highlight=False)


def env_header(dev: torch.device | str = "auto") -> dict[str, Any]:
    """:func:`environment` for ``dev`` (``auto``: CUDA if available)."""
    return environment(pick_device(dev) if isinstance(dev, str) else dev)
