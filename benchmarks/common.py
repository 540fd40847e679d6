"""Shared plumbing of the benchmarks: environment record and header, CLI, phase timer, tables.

:func:`setup` prints one header line (device, torch threads, CPU count, torch/torchvision
versions, load average) and returns the environment a benchmark stores beside its rows
(:class:`nas.experiment.Experiment`'s ``env``); ``--quick`` smoke runs write to
``runs/benchmarks/`` (git-ignored). Engine phases are timed through :mod:`pruning.phases`
(:class:`PhaseTimer`), CUDA synchronised at every phase boundary.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUICK_RESULTS = ROOT / "runs" / "benchmarks"  # smoke runs: gitignored, never rendered


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


def parser(name: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--out", "--results", type=Path, default=None,
                   help=f"JSON result file (default benchmarks/results/{name}.json; with "
                        f"--quick runs/benchmarks/{name}_quick.json)")
    p.set_defaults(bench_name=name)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda ...")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads before anything runs (default: torch's)")
    return p


def default_out(name: str, *, quick: bool = False) -> Path:
    """``benchmarks/results/NAME.json``; a quick smoke run ``runs/benchmarks/NAME_quick.json``."""
    return QUICK_RESULTS / f"{name}_quick.json" if quick else RESULTS / f"{name}.json"


def setup(args: argparse.Namespace) -> tuple[torch.device, dict[str, Any]]:
    """Threads, device, ``args.out`` default; prints and returns the environment (with the
    command line)."""
    args.out = args.out or default_out(args.bench_name, quick=args.quick)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dev = pick_device(args.device)
    env = {**environment(dev), "command": " ".join([Path(sys.executable).name, *sys.argv])}
    from rich.console import Console

    Console().print(f"[bold]device={env['device']} | torch threads={env['torch_threads']} | "
                    f"CPUs={env['cpu_count']} | torch {env['torch']} | torchvision "
                    f"{env['torchvision']} | load avg {env['load_average']} | git {env['git']}[/]")
    return dev, env


def sync(dev: torch.device | str | None = None) -> None:
    if torch.cuda.is_available() and (dev is None or torch.device(dev).type == "cuda"):
        torch.cuda.synchronize()


class PhaseTimer:
    """A :mod:`pruning.phases` listener: wall time and call count per engine phase.

    ``totals`` / ``counts`` accumulate per phase name over the whole run, and also per
    ``"parent>name"`` (the phase directly enclosing it), so nested phases can be told apart
    (``collect>forward.output`` is the reference pass that fills the caches,
    ``solve>report`` the solver's own error check, ``unit>report`` the layer report's).
    Each finished ``unit`` phase (one layer or coupled group) appends the times and counts
    spent inside it to ``units`` / ``unit_counts``, in the order of ``SparsifyResult.report``.
    CUDA is synchronised at every phase boundary. Use it as
    ``with phases.listen(PhaseTimer(dev)) as t: sparsify(...)``.
    """

    def __init__(self, dev: torch.device) -> None:
        self.dev = dev
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.units: list[dict[str, float]] = []
        self.unit_counts: list[dict[str, int]] = []
        self._open: list[tuple[str, float]] = []
        self._unit_start: tuple[dict[str, float], dict[str, int]] | None = None

    def enter(self, name: str) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        if name == "unit":
            self._unit_start = (dict(self.totals), dict(self.counts))
        keys = [name, f"{self._open[-1][0] if self._open else ''}>{name}"]
        for k in keys:
            self.counts[k] = self.counts.get(k, 0) + 1
        self._open.append((name, time.perf_counter()))

    def exit(self, name: str) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        opened, t0 = self._open.pop()
        assert opened == name, f"phase {name!r} closed while {opened!r} was open"
        dt = time.perf_counter() - t0
        for k in [name, f"{self._open[-1][0] if self._open else ''}>{name}"]:
            self.totals[k] = self.totals.get(k, 0.0) + dt
        if name == "unit" and self._unit_start is not None:
            t_before, c_before = self._unit_start
            self.units.append({k: v - t_before.get(k, 0.0) for k, v in self.totals.items()
                               if v - t_before.get(k, 0.0) > 0})
            self.unit_counts.append({k: v - c_before.get(k, 0) for k, v in self.counts.items()
                                     if v - c_before.get(k, 0) > 0})
            self._unit_start = None


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
