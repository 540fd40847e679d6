"""One experiment runner for every benchmark: named units, one resumable JSON layout.

An experiment is a list of units (``"base/s0"``, ``"prune/entropic/s0/x0.5"`` ...), each a
function that returns a JSON row. :class:`Experiment` runs the ones not finished yet, one at
a time, and writes the file after every unit, so a killed run loses at most the unit in
flight; the long trainings inside a unit checkpoint every epoch (:meth:`Experiment.train`)
and resume mid-unit after a kill, also on a fresh machine from a checkpoint committed under
``<results>/<name>_partial/<unit>/``.

The file: ``{"benchmark": NAME, "settings": {...}, "env": {...}, "rows": {KEY: ROW}}``. A
write lays only the row just finished over the file as it is on disk, so rows mended or
deleted by hand, or finished by another process, stay as they are.

Example:
    >>> exp = Experiment("cifar_paper", Path("benchmarks/results"), settings, work=Path("runs/x"))
    >>> exp.run([Unit("base/s0", lambda: train_base(...))])
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import nn

from nas.jsonio import write_json

__all__ = ["Experiment", "Results", "Unit", "seed_from_partial"]

log = logging.getLogger(__name__)


def seed_from_partial(partial_root: Path, ckpt: Path) -> bool:
    """Copy ``partial_root/<ckpt name>`` (a mid-run checkpoint committed when a session ended
    inside a unit) into ``ckpt`` when ``ckpt`` has no ``last/`` of its own; True if copied."""
    src = partial_root / ckpt.name
    if (ckpt / "last").exists() or not (src / "last").is_dir():
        return False
    shutil.copytree(src, ckpt, dirs_exist_ok=True)
    log.info("%s: resuming from the committed partial checkpoint %s", ckpt.name, src)
    return True


class Results:
    """``{"benchmark", "settings", "rows": {key: row}}`` rewritten atomically after every unit.

    Before each write the file is read again and only the row just finished is laid over
    it, so a unit another process finished meanwhile, a row mended by hand or one deleted to
    force a rerun stay as they are on disk (no lock: two units finishing in the
    same millisecond could still race). If the file cannot be read at that moment (a broken
    hand edit), the finished row goes to a side file beside it instead of being lost.

    Args:
        path: The JSON file.
        settings: This run's settings, stored under ``"settings"``.
        benchmark: The name stored under ``"benchmark"``.
        must_match: Settings keys whose value on disk must equal this run's (a file written
            under another protocol is refused, naming the key).
    """

    def __init__(self, path: Path, settings: Mapping[str, Any], *, benchmark: str,
                 must_match: Iterable[str] = ()) -> None:
        self.path = path
        self.benchmark = benchmark
        self.data: dict[str, Any] = {"benchmark": benchmark, "settings": dict(settings),
                                     "rows": {}}
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise SystemExit(f"{path}: cannot read the results file ({e}); mend it or pass "
                                 "--results for another file") from e
            if not isinstance(old, dict) or not isinstance(old.get("rows", {}), dict):
                raise SystemExit(f"{path}: not a results file of this layout (\"rows\" must map "
                                 "unit keys to rows); pass --results for another file")
            if old.get("benchmark", benchmark) != benchmark:
                raise SystemExit(f"{path}: holds benchmark {old['benchmark']!r}, not "
                                 f"{benchmark!r}; pass --results for another file")
            for key in must_match:
                was = old.get("settings", {}).get(key)
                if was not in (None, settings.get(key)):
                    raise SystemExit(f"{path}: written with {key}={was!r}, this run asks "
                                     f"{settings.get(key)!r}; use --results for another file")
            self.data["rows"] = old.get("rows", {})

    @property
    def rows(self) -> dict[str, Any]:
        return self.data["rows"]

    def get(self, key: str) -> dict[str, Any] | None:
        return self.data["rows"].get(key)

    def put(self, key: str, row: dict[str, Any]) -> None:
        row = {"key": key, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "load_avg": [round(v, 2) for v in os.getloadavg()], **row}
        self.data["rows"][key] = row
        try:
            on_disk = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (OSError, json.JSONDecodeError) as e:
            side = self.path.with_name(f"{self.path.stem}.{key.replace('/', '_')}.json")
            write_json(side, {"benchmark": self.benchmark, "rows": {key: row}}, indent=1)
            print(f"warning: {self.path} cannot be read ({e}); row {key} written to {side} "
                  "instead: merge it into the results file by hand", file=sys.stderr, flush=True)
            return
        rows = {**on_disk.get("rows", {}), key: row}
        # this run's settings and environment; any other top-level key on disk is kept
        self.data = {**on_disk, **{k: v for k, v in self.data.items() if k != "rows"}, "rows": rows}
        write_json(self.path, self.data, indent=1)


@dataclass(frozen=True)
class Unit:
    """One resumable piece of an experiment: ``run()`` returns its JSON row."""

    key: str
    run: Callable[[], dict[str, Any]]


class Experiment:
    """Runs units in order, skipping finished ones; holds where checkpoints live.

    Args:
        name: The benchmark's name (``<results_dir>/<name>.json``).
        results_dir: Folder of the results file, the committed weights
            (``<name>_ckpt/``) and committed mid-run checkpoints (``<name>_partial/``).
        settings: The run's settings (stored in the file).
        work: Per-epoch checkpoints of the trainings (git-ignored), resumed from.
        results: Override of the results file (smoke runs).
        must_match: Settings that must equal the file's (see :class:`Results`).
        env: Environment record stored beside the rows (device, threads, versions).
    """

    def __init__(self, name: str, results_dir: Path, settings: Mapping[str, Any], *,
                 work: Path, results: Path | None = None, must_match: Iterable[str] = (),
                 env: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.settings = dict(settings)
        self.work = work
        self.results_dir = results_dir
        self.ckpt_root = results_dir / f"{name}_ckpt"
        self.partial_root = results_dir / f"{name}_partial"
        self.res = Results(results or results_dir / f"{name}.json", self.settings,
                           benchmark=name, must_match=must_match)
        if env is not None:
            self.res.data["env"] = dict(env)

    def run(self, units: list[Unit], *, brief: Callable[[dict[str, Any]], str] | None = None
            ) -> int:
        """Run the unfinished units; one progress line per unit, a summary at the end.
        Returns the number of units run."""
        done = 0
        t_all = time.perf_counter()
        print(f"# {self.name}: {len(units)} units, results {self.res.path}", flush=True)
        for i, unit in enumerate(units, 1):
            if self.res.get(unit.key) is not None:
                print(f"[{i}/{len(units)}] {unit.key}: done earlier, skipped", flush=True)
                continue
            print(f"[{i}/{len(units)}] {unit.key}: running", flush=True)
            t0 = time.perf_counter()
            row = unit.run()
            row["unit_wall_s"] = time.perf_counter() - t0
            import torch

            row["torch_threads"] = torch.get_num_threads()
            self.res.put(unit.key, row)
            done += 1
            tail = brief(row) if brief else ""
            print(f"[{i}/{len(units)}] {unit.key}: {tail} ({row['unit_wall_s'] / 60:.1f} min)",
                  flush=True)
        print(f"# {self.name}: {done} units run in {(time.perf_counter() - t_all) / 60:.1f} min; "
              f"{len(self.res.rows)} rows in {self.res.path}", flush=True)
        return done

    # -- trainings ------------------------------------------------------------------------

    def seed_from_partial(self, ckpt: Path) -> bool:
        """Copy a committed mid-run checkpoint into ``ckpt`` when ``ckpt`` has none."""
        return seed_from_partial(self.partial_root, ckpt)

    def train(self, model: nn.Module, loaders: Any, config: Any, name: str) -> dict[str, Any]:
        """Train ``model`` in place, checkpointing every epoch under ``work/<name>`` and
        resuming from there (or from a committed partial); returns the row's training part."""
        from nas.train import train

        ckpt = self.work / name
        self.seed_from_partial(ckpt)
        t0 = time.perf_counter()
        r = train(model, loaders, config, checkpoint_dir=ckpt, resume=True)
        return {"epochs": config.epochs, "lr": config.lr, "train_wall_s": time.perf_counter() - t0,
                "seconds_per_epoch": r.seconds_per_epoch,
                "resumed_from_epoch": r.resumed_from_epoch, "history": r.history}

    def carry_partial(self, name: str) -> Path | None:
        """Copy ``work/<name>/last`` under ``<name>_partial/`` (to commit before a session
        ends mid-unit); returns the copy, None when there is nothing to carry."""
        src = self.work / name / "last"
        if not src.is_dir():
            return None
        dst = self.partial_root / name / "last"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        return dst
