"""The ``entropic-nas`` command line.

    entropic-nas demo                       # the embedded default: quickstart search
    entropic-nas train  --config C [--arch arch.json] [--out DIR]
    entropic-nas prune  --config C --checkpoint CKPT [--out DIR] [--finetune-epochs N]
    entropic-nas search --config C [--backend optuna|ray] [--trials N] [--storage URL]
                        [--out DIR] [--resume] [--no-wandb] [--ray-address ADDR]
    entropic-nas pareto --storage URL --study NAME [--out DIR]
    entropic-nas export --storage URL --study NAME --pick max-acc|knee|macs<=X --out DIR
    entropic-nas families

Bad input (config, checkpoint, arch spec, dataset location, flags, storage URL, study) ends
with one clear message naming the file, field or flag, exit code 2, before any work; nothing of
an earlier run is touched. Any other failure prints one line, exit code 1, and the path of a log
file holding the traceback (``$ENTROPIC_NAS_LOG_DIR``, default ``~/.cache/entropic-nas/logs``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)  # log lines are never broken mid-sentence
REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _parse_set(values: list[str]) -> dict[str, Any]:
    from .validate import InputError

    out: dict[str, Any] = {}
    for item in values:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise InputError(f"--set expects KEY=VALUE (e.g. train.epochs=3), got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise InputError(f"--set {key}: the value {raw!r} is not valid YAML ({exc})") from None
    return out


def _config(args: argparse.Namespace):
    from .config import load_config

    return load_config(args.config, _parse_set(args.set or []))


def _out(args: argparse.Namespace, cfg_name: str, kind: str) -> Path:
    return Path(args.out) if args.out else Path("runs") / f"{cfg_name}-{kind}"


def cmd_train(args: argparse.Namespace) -> int:
    from .jobs import run_train
    from .validate import preflight_train

    cfg = _config(args)
    out = _out(args, cfg.name, "train")
    preflight_train(cfg, out=out, arch=Path(args.arch) if args.arch else None, source=args.config)
    summary = run_train(cfg, out, arch=Path(args.arch) if args.arch else None,
                        resume=not args.no_resume)
    console.print(
        f"[bold]trained[/] {summary['family']} on {summary['dataset']}: "
        f"val {summary['val_acc']:.4f}, test {summary['test_acc']:.4f}, "
        f"{summary['params']:,} params, {summary['macs'] / 1e6:.3f} M MACs, "
        f"{summary['seconds_per_epoch']:.1f} s/epoch -> {out}"
    )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from .jobs import budget_line, run_prune
    from .validate import preflight_prune

    cfg = _config(args)
    out = _out(args, cfg.name, "prune")
    preflight_prune(cfg, checkpoint=Path(args.checkpoint), out=out, source=args.config)
    s = run_prune(cfg, Path(args.checkpoint), out, finetune_epochs=args.finetune_epochs)
    line = (f"[bold]pruned[/]: params {s['before']['params']:,} -> {s['after']['params']:,} "
            f"({100 * s['param_sparsity']:.1f} % sparsity), MACs x{s['macs_ratio']:.3f}, "
            f"val acc {s['val_acc_before']:.4f} -> {s['val_acc_pruned']:.4f}")
    if "val_acc_finetuned" in s:
        line += f" -> {s['val_acc_finetuned']:.4f} after {s['finetune_epochs']} fine-tune epoch(s)"
    console.print(line + f" -> {out}")
    if s.get("budget"):
        console.print(budget_line(s["budget"]), highlight=False)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from .search import run_search

    cfg = _config(args)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    run_search(
        cfg, out, backend=args.backend, trials=args.trials, storage=args.storage,
        resume=args.resume, wandb_enabled=False if args.no_wandb else None,
        ray_address=args.ray_address, pick=args.pick, source=args.config,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    args.config = args.config or str(REPO_CONFIGS / "quickstart.yaml")
    if not Path(args.config).exists():
        from .validate import InputError

        raise InputError(f"demo: {args.config} not found (run from the repository checkout)")
    args.set = args.set or []
    args.backend = args.trials = args.storage = args.ray_address = None
    args.resume = Path(args.out, "study.db").exists()
    args.no_wandb = False
    args.pick = "knee"
    return cmd_search(args)


def cmd_pareto(args: argparse.Namespace) -> int:
    from .search import replot
    from .validate import check_out_dir, read_study_storage

    url = read_study_storage(args.storage, args.study)
    if args.out:
        check_out_dir(args.out)
    replot(url, args.study, Path(args.out) if args.out else None)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .search import export_from_storage
    from .validate import check_out_dir, check_pick, read_study_storage

    check_pick(args.pick)
    check_out_dir(args.out)
    if args.data_root and not Path(args.data_root).is_dir():
        from .validate import InputError

        raise InputError(f"--data-root {args.data_root}: not a directory")
    url = read_study_storage(args.storage, args.study)
    export_from_storage(url, args.study, args.pick, Path(args.out),
                        data_root=args.data_root)
    return 0


def cmd_families(args: argparse.Namespace) -> int:
    import search_spaces
    from pruning.measure import count_macs, count_params

    rows: list[dict[str, Any]] = []
    for name in search_spaces.list_families():
        fam = search_spaces.get_family(name)
        spec = search_spaces.default_spec(name)
        model = search_spaces.build(spec)
        rows.append({"family": name, "input_shape": list(spec.input_shape),
                     "params": count_params(model),
                     "macs": count_macs(model, tuple(spec.input_shape)),
                     "prunable_layers": len(spec.widths), "description": fam.description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    table = Table(title="registered model families (MACs per image; FLOPs = 2 x MACs)")
    for col in ("family", "input", "params", "MACs", "layers", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["family"], "x".join(map(str, r["input_shape"])), f"{r['params']:,}",
                      f"{r['macs']:,}", str(r["prunable_layers"]), r["description"])
    Console().print(table)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("entropic-nas")
    except PackageNotFoundError:  # run from a checkout that was not pip-installed
        return "unknown (not installed)"


PICK_RULES = ("max-acc | knee | max-NAME | min-NAME | NAME<=X | NAME>=X (NAME: an objective "
              "or numeric trial attribute such as macs, params, latency_ms; X like 200k, 2e5, "
              "0.2M)")


def build_parser() -> argparse.ArgumentParser:
    from .validate import nonnegative_int, positive_int

    p = argparse.ArgumentParser(prog="entropic-nas", description=(__doc__ or "").replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser, required: bool = True) -> None:
        sp.add_argument("--config", required=required, help="YAML config (see configs/)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config field, e.g. --set train.epochs=3")
        sp.add_argument("--out", help="output directory")

    t = sub.add_parser("train", help="train a model from scratch")
    with_config(t)
    t.add_argument("--arch", help="arch.json (ArchSpec) to train instead of the family default")
    t.add_argument("--no-resume", action="store_true", help="ignore an interrupted run in --out")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("prune", help="sparsify a trained checkpoint")
    with_config(pr)
    pr.add_argument("--checkpoint", required=True, help="checkpoint (dir, stem or .safetensors)")
    pr.add_argument("--finetune-epochs", type=nonnegative_int("--finetune-epochs"), default=None,
                    help="fine-tune the pruned model for N epochs (default: finetune.epochs)")
    pr.set_defaults(func=cmd_prune)

    s = sub.add_parser("search", help="run an architecture search")
    with_config(s)
    s.add_argument("--backend", choices=["optuna", "ray"],
                   help="search engine (default: search.backend of the config)")
    s.add_argument("--trials", type=positive_int("--trials"),
                   help="total finished trials the study should hold, counted across resumes "
                        "(default: search.trials)")
    s.add_argument("--storage", help="Optuna storage: postgresql://user:pw@host/db, "
                   "sqlite:///path.db or journal:PATH (default: sqlite in --out)")
    s.add_argument("--resume", action="store_true", help="continue an existing study")
    s.add_argument("--no-wandb", action="store_true", help="no W&B runs (default: wandb.enabled)")
    s.add_argument("--ray-address", help="join an existing Ray cluster (ray start --head)")
    s.add_argument("--pick", default="knee",
                   help=f"which trial to export at the end: {PICK_RULES}")
    s.set_defaults(func=cmd_search)

    d = sub.add_parser("demo", help="the embedded default: a quickstart search on 5,000 MNIST digits")
    d.add_argument("--config", default=None,
                   help="YAML config (default: configs/quickstart.yaml, the embedded default)")
    d.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, e.g. --set search.trials=4")
    d.add_argument("--out", default="runs/quickstart",
                   help="run directory (default: runs/quickstart; rerunning resumes it)")
    d.set_defaults(func=cmd_demo)

    pa = sub.add_parser("pareto", help="reprint and replot a study's Pareto front")
    pa.add_argument("--storage", required=True, help="the search's Optuna storage URL")
    pa.add_argument("--study", required=True, help="study name (search.study_name or the "
                    "config's name)")
    pa.add_argument("--out", help="where to write pareto.* (default: the run directory)")
    pa.set_defaults(func=cmd_pareto)

    e = sub.add_parser("export", help="export a trial's architecture, weights, ONNX, card")
    e.add_argument("--storage", required=True, help="the search's Optuna storage URL")
    e.add_argument("--study", required=True, help="study name (search.study_name or the "
                   "config's name)")
    e.add_argument("--pick", default="knee", help=PICK_RULES)
    e.add_argument("--out", required=True, help="export directory")
    e.add_argument("--data-root", help="data.root for the test-accuracy evaluation")
    e.set_defaults(func=cmd_export)

    f = sub.add_parser("families", help="list registered model families")
    f.add_argument("--json", action="store_true", help="print JSON instead of a table")
    f.set_defaults(func=cmd_families)
    return p


def _log_dir() -> Path:
    env = os.environ.get("ENTROPIC_NAS_LOG_DIR")
    return Path(env) if env else Path.home() / ".cache" / "entropic-nas" / "logs"


def _write_log(exc: BaseException, argv: list[str]) -> Path | None:
    """The traceback of an unexpected error, in a file of its own; None if none can be written."""
    from nas.storage import scrub

    text = scrub(f"entropic-nas {' '.join(argv)}\n"
                 + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    name = f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    import tempfile

    for folder in (_log_dir(), Path(tempfile.gettempdir()) / "entropic-nas-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
            return folder / name
        except OSError:
            continue
    return None


def _one_line(exc: BaseException) -> str:
    from nas.storage import scrub

    text = scrub(str(exc)).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    from rich.markup import escape

    from nas.backends.optuna import DiskError, disk_error
    from nas.checkpoint import CheckpointError
    from nas.config import ConfigError
    from nas.study import StudyExistsError
    from nas.validate import InputError
    from search_spaces import SpecError
    from search_spaces.data import DatasetNotFoundError

    terminated: list[int] = []

    def _on_term(signum: int, frame: Any) -> None:  # what schedulers and `kill` send
        terminated.append(signum)
        raise KeyboardInterrupt  # the same path as Ctrl-C: trials FAIL, re-queued on --resume

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, SpecError, CheckpointError, DatasetNotFoundError, InputError,
            StudyExistsError) as exc:
        from nas.storage import scrub

        # escaped: a message holds user text (paths, keys, "entropic-nas[ray]") that rich
        # would read as markup and drop
        console.print(f"[bold red]error:[/] {escape(scrub(str(exc)))}", highlight=False,
                      soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        console.print(f"[yellow]{what}[/]: finished work is kept; rerun with --resume")
        return 143 if terminated else 130
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: one line, the rest in a log
        log = _write_log(exc, argv)
        where = f" (traceback in {log})" if log else ""
        disk = exc if isinstance(exc, DiskError) else disk_error(exc)
        if disk is not None:
            what = str(disk) if isinstance(disk, DiskError) else (
                f"{disk.strerror or 'OS error'}"
                + (f" while writing {disk.filename}" if disk.filename else ""))
            console.print(f"[bold red]error:[/] {escape(what)}; finished trials are kept: free space "
                          f"and run it again (a search continues with --resume){where}",
                          highlight=False, soft_wrap=True)
            return 1
        console.print(f"[bold red]error:[/] {escape(_one_line(exc) + where)}", highlight=False,
                      soft_wrap=True)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
