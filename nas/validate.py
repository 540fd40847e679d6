"""Checks at the edge: every CLI argument and config field that can be wrong, before any work.

Each check raises :class:`InputError` with one message that names the flag, file or field;
the CLI turns it into ``error: ...`` and exit code 2. Nothing here writes a file or creates a
storage: a run that fails its checks leaves the run directory as it was.

The preflight functions (:func:`preflight_search`, :func:`preflight_train`,
:func:`preflight_prune`, :func:`preflight_read_study`) bundle what a command needs; they run
after the config is parsed (``nas.config.load_config``) and before pre-training.
"""

from __future__ import annotations

import contextlib
import math
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .storage import redact

if TYPE_CHECKING:
    from search_spaces import ArchSpec

    from .config import RunConfig

MAX_WIDTH = 1 << 16
"""Largest width (channels / units) of one layer an arch spec may ask for."""
MAX_PARAMS = 2_000_000_000
"""Largest model (parameters, ~8 GB in float32) an arch spec may describe."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SQLITE_MAGIC = b"SQLite format 3\x00"


class InputError(ValueError):
    """A CLI argument or config value is wrong; the message names the flag / file / field."""


# -- plain arguments ---------------------------------------------------------------------------
def int_at_least(flag: str, low: int):  # noqa: ANN201 - an argparse ``type=``
    """An argparse ``type`` accepting whole numbers >= ``low``, naming ``flag`` otherwise."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{flag} must be >= {low}, got {value}")
        return value

    return parse


def positive_int(flag: str):  # noqa: ANN201 - an argparse ``type=``
    """Whole numbers >= 1 (``--trials 0`` is an error, not 'default')."""
    return int_at_least(flag, 1)


def nonnegative_int(flag: str):  # noqa: ANN201 - an argparse ``type=``
    """Whole numbers >= 0."""
    return int_at_least(flag, 0)


def check_out_dir(path: str | Path, *, flag: str = "--out") -> Path:
    """``path`` is usable as an output directory: a directory or nothing, under a directory."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {p}: exists and is not a directory")
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{flag} {p}: {parent} is a file, not a directory")
            break
    return p


def check_pick(rule: str, *, flag: str = "--pick") -> str:
    """The syntax of a pick rule (``max-acc``, ``knee``, ``max-NAME``, ``NAME<=X``...)."""
    from .export import RULE_HELP, parse_quantity

    text = rule.strip()
    if text in ("max-acc", "max-accuracy", "knee") or re.fullmatch(r"(max|min)-\w+", text):
        return text
    m = re.fullmatch(r"(\w+)\s*(<=|>=)\s*(.+)", text)
    if m:
        try:
            limit = parse_quantity(m.group(3))
        except ValueError as exc:
            raise InputError(f"{flag} {rule!r}: {exc}") from None
        if not math.isfinite(limit):
            raise InputError(f"{flag} {rule!r}: the limit must be a finite number")
        return text
    raise InputError(f"{flag} {rule!r}: not a pick rule; use {RULE_HELP}")


def check_name(value: str, *, field: str) -> str:
    if not _NAME.fullmatch(value or ""):
        raise InputError(f"{field} {value!r}: use letters, digits, '_', '-' and '.' only "
                         "(it names a study and a run directory)")
    return value


# -- storage -----------------------------------------------------------------------------------
def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other URLs and ``:memory:``)."""
    if not url.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    return None if not db or db == ":memory:" else Path(db)


def check_storage_url(url: str, *, flag: str = "--storage", must_exist: bool = False) -> str:
    """Syntax of a storage URL and, for file storages, the file: no network access here.

    Accepts ``journal:PATH``, a SQLAlchemy URL whose dialect and driver are installed, or (for
    reading, ``must_exist``) a run directory holding ``study.db``. A SQLite file that exists
    must be a readable SQLite database.
    """
    if not isinstance(url, str) or not url.strip():
        raise InputError(f"{flag}: empty storage URL")
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):]).expanduser()
        if not str(path) or url == "journal:":
            raise InputError(f"{flag} {url!r}: 'journal:' needs a file path, e.g. journal:runs/x/journal.log")
        if path.is_dir():
            raise InputError(f"{flag} {url!r}: {path} is a directory, not a journal file")
        if must_exist and not path.exists():
            raise InputError(f"{flag} {url!r}: no Optuna journal at {path}")
        _check_parent(path, flag, url)
        return url
    if "://" not in url:
        p = Path(url)
        if must_exist and p.is_dir():
            if not (p / "study.db").exists():
                raise InputError(f"{flag} {url!r}: the directory holds no study.db")
            return check_storage_url(f"sqlite:///{(p / 'study.db').resolve()}", flag=flag,
                                     must_exist=True)
        raise InputError(
            f"{flag} {url!r}: expected a database URL (sqlite:///runs/x/study.db, "
            "postgresql://user@host/db), 'journal:PATH'"
            + (", or a run directory" if must_exist else ", or nothing for --out/study.db")
        )
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise InputError(f"{flag} {url!r}: malformed database URL ({exc})") from None
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        if parsed.drivername.split("+")[0] == "postgres":  # Heroku's / libpq's spelling
            raise InputError(f"{flag} {url!r}: write postgresql://, not postgres:// "
                             "(SQLAlchemy has no 'postgres' dialect)") from None
        raise InputError(f"{flag} {url!r}: unknown database kind {parsed.drivername!r} "
                         "(use sqlite, postgresql or mysql)") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        extra = " - pip install 'entropic-nas[postgres]'" if (
            parsed.get_backend_name() == "postgresql" and "psycopg2" not in parsed.drivername) \
            else ""
        raise InputError(f"{flag} {url!r}: the database driver for {parsed.drivername!r} is "
                         f"not installed ({exc}{extra})") from None
    if parsed.get_backend_name() == "sqlite":
        db = sqlite_path(url)
        if db is not None:
            check_sqlite_file(db, flag=flag, url=url, must_exist=must_exist)
    return url


def check_sqlite_file(db: Path, *, flag: str, url: str, must_exist: bool = False) -> None:
    if db.is_dir():
        raise InputError(f"{flag} {url!r}: {db} is a directory, not a SQLite database")
    if not db.exists():
        if must_exist:
            raise InputError(f"{flag} {url!r}: no Optuna database at {db}")
        _check_parent(db, flag, url)
        return
    try:
        with db.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise InputError(f"{flag} {url!r}: cannot read {db} ({exc.strerror})") from None
    if head and head != _SQLITE_MAGIC:
        raise InputError(f"{flag} {url!r}: {db} is not a SQLite database (corrupt or another "
                         "kind of file)")
    if not head:
        return  # an empty file: SQLite treats it as a new database
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            con.execute("PRAGMA schema_version").fetchone()
            row = con.execute("PRAGMA quick_check(1)").fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise InputError(f"{flag} {url!r}: {db} is a damaged SQLite database ({exc})") from None
    if row is None or row[0] != "ok":
        raise InputError(f"{flag} {url!r}: {db} is a damaged SQLite database "
                         f"(integrity check: {row[0] if row else 'no answer'})")


def _check_parent(path: Path, flag: str, url: str) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{flag} {url!r}: {parent} is a file, not a directory")
            return


def _storage_exists(url: str) -> bool:
    """Whether opening ``url`` could find a study (False: a file storage not yet created)."""
    if url.startswith("journal:"):
        return Path(url[len("journal:"):]).expanduser().exists()
    db = sqlite_path(url)
    return db is None or (db.exists() and db.stat().st_size > 0)


def _study_names(url: str, *, flag: str) -> tuple[Any, list[str]]:
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    from .study import open_storage

    try:
        store = open_storage(url, must_exist=True)
        return store, list(optuna.study.get_all_study_names(store))
    except (SQLAlchemyError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{flag} {url!r}: cannot read the study storage ({first})") from None


def read_study_storage(storage: str, study: str) -> str:
    """For ``pareto`` / ``export``: the storage exists and holds ``study``; returns the URL."""
    url = check_storage_url(storage, must_exist=True)
    if "://" not in url and not url.startswith("journal:"):
        url = f"sqlite:///{(Path(url) / 'study.db').resolve()}"
    _, names = _study_names(url, flag="--storage")
    if study not in names:
        raise InputError(f"--study {study!r}: no such study in {redact(storage)}; it holds "
                         f"{sorted(names) or 'no studies'}")
    return url


# -- architectures and checkpoints ---------------------------------------------------------------
def check_spec_size(spec: ArchSpec, *, source: str) -> None:
    """Widths with an upper bound: no layer over :data:`MAX_WIDTH`, no model over :data:`MAX_PARAMS`."""
    import torch

    import search_spaces

    big = {k: w for k, w in spec.widths.items() if w > MAX_WIDTH}
    if big:
        key, width = next(iter(big.items()))
        raise InputError(f"{source}: widths[{key!r}] = {width:,} is over the limit of "
                         f"{MAX_WIDTH:,} per layer")
    with torch.device("meta"):  # counts parameters without allocating them
        model = search_spaces.build(spec)
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMS:
        raise InputError(f"{source}: the architecture has {n:,} parameters, over the limit of "
                         f"{MAX_PARAMS:,}")


def check_arch(spec: ArchSpec, cfg: RunConfig, input_shape: tuple[int, ...], *,
               source: str, num_classes: int | None = None) -> None:
    """An arch spec fits the config: same family, the dataset's input shape, bounded widths."""
    if spec.family != cfg.model.family:
        raise InputError(f"{source}: family {spec.family!r} differs from the config's "
                         f"model.family {cfg.model.family!r}")
    if tuple(spec.input_shape) != tuple(input_shape):
        raise InputError(f"{source}: input_shape {list(spec.input_shape)} does not match the "
                         f"dataset {cfg.data.name!r} ({list(input_shape)})")
    if num_classes is not None and spec.num_classes != num_classes:
        raise InputError(f"{source}: num_classes {spec.num_classes} does not match the dataset "
                         f"{cfg.data.name!r} ({num_classes} classes)")
    check_spec_size(spec, source=source)


def check_config(cfg: RunConfig, *, source: str = "config", search: bool = False) -> None:
    """Cross-field checks the per-field schema cannot make (``search``: also the search's)."""
    check_name(cfg.name, field=f"{source}: name")
    if cfg.search.study_name is not None:
        check_name(cfg.search.study_name, field=f"{source}: search.study_name")
    shape = cfg.data.input_shape
    if shape is not None and any(int(v) <= 0 for v in shape):
        raise InputError(f"{source}: data.input_shape must be 3 positive ints (C, H, W), got {list(shape)}")
    fe = cfg.search.space.finetune_epochs
    if fe is not None and not 0 <= fe[0] <= fe[1]:
        raise InputError(f"{source}: search.space.finetune_epochs must be [low, high] with "
                         f"0 <= low <= high, got {list(fe)}")
    acc = cfg.search.accuracy
    ft_low = fe[0] if fe is not None else cfg.finetune.epochs
    if search and acc == "finetuned" and ft_low < 1:
        field = "search.space.finetune_epochs" if fe is not None else "finetune.epochs"
        raise InputError(f"{source}: search.accuracy 'finetuned' needs {field} >= 1 (got "
                         f"{ft_low}); use search.accuracy: pruned to search without fine-tuning")
    if search and acc in ("scratch_e", "scratch_b"):
        variant = acc[-1].upper()
        if not cfg.scratch.enabled or variant not in cfg.scratch.variants:
            raise InputError(f"{source}: search.accuracy {acc!r} needs scratch.enabled and "
                             f"{variant!r} in scratch.variants")
    if cfg.search.storage is not None:
        check_storage_url(cfg.search.storage, flag=f"{source}: search.storage")
    if cfg.model.weights:
        from .checkpoint import CheckpointError, load_state_dict_file

        try:  # readable as a state dict before anything is written (the fit is checked later)
            load_state_dict_file(cfg.model.weights, field=f"{source}: model.weights")
        except CheckpointError as e:
            raise InputError(str(e)) from None
    if (search and cfg.search.times_latency) or cfg.prune.target_latency_ms is not None:
        _check_latency(cfg, source, search)


def _check_cuda(device: str, field: str) -> None:
    """A ``cuda`` / ``cuda:N`` device must exist on this node."""
    if not device.startswith("cuda"):
        return
    import torch

    index = int(device.partition(":")[2] or 0)
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise InputError(f"{field} {device!r}: no such CUDA device on this node "
                         f"({torch.cuda.device_count()} visible)")


def _check_latency(cfg: RunConfig, source: str, search: bool) -> None:
    """The latency section's device exists here (and, in a Ray search, is one a trial owns)."""
    device, s = cfg.latency.device, cfg.search
    _check_cuda(device, f"{source}: latency.device")
    if search and s.backend == "ray" and device.startswith("cuda"):
        if s.gpus_per_trial <= 0:
            raise InputError(f"{source}: latency.device {device!r} with the ray backend needs "
                             "search.gpus_per_trial > 0 (trials sharing an unreserved GPU "
                             "time each other)")
        if device.partition(":")[2] not in ("", "0"):
            raise InputError(f"{source}: latency.device {device!r}: a Ray trial sees only the "
                             "GPU it was given; use 'cuda'")


def check_latency_resume(cfg: RunConfig, trials: list[Any], *, study: str) -> None:
    """A resumed study's latencies were timed as this config times them (else one front
    would mix incomparable numbers)."""
    had = next((t.user_attrs["latency"] for t in trials
                if isinstance(t.user_attrs.get("latency"), dict)), None)
    if had is None:  # nothing timed yet
        return
    mine = cfg.latency_kwargs()
    if mine["threads"] is None:  # unset: whatever this process runs with
        import torch

        mine["threads"] = torch.get_num_threads()
    same_device = str(had.get("device")).split(":")[0] == mine["device"].split(":")[0]
    if not same_device or had.get("batch_size") != mine["batch_size"] \
            or had.get("threads") != mine["threads"]:
        raise InputError(
            f"latency: study {study!r} timed its trials at batch "
            f"{had.get('batch_size')} on {had.get('device')} with {had.get('threads')} threads; "
            f"this config times at batch {mine['batch_size']} on {mine['device']} with "
            f"{mine['threads']} threads; set latency.device / batch_size / threads as the "
            "study had them, or use another study name")


def _loaders(cfg: RunConfig) -> Any:
    from .trial import load_data

    return load_data(cfg)


def preflight_arch(cfg: RunConfig, arch: Path | None) -> None:
    """``--arch`` / ``model.arch`` against the dataset the config loads."""
    from search_spaces import ArchSpec

    path = arch or (Path(cfg.model.arch) if cfg.model.arch else None)
    if path is None:
        return
    flag = "--arch" if arch else "model.arch"
    spec = ArchSpec.load(path)  # SpecError names the file and field
    loaders = _loaders(cfg)
    check_arch(spec, cfg, tuple(loaders.input_shape), source=f"{flag} {path}")


def preflight_train(cfg: RunConfig, *, out: Path, arch: Path | None, source: str) -> None:
    check_config(cfg, source=source)
    check_out_dir(out)
    preflight_arch(cfg, arch)


def preflight_prune(cfg: RunConfig, *, checkpoint: Path, out: Path, source: str) -> None:
    """The checkpoint is one of the config's family and fits the config's dataset."""
    from .checkpoint import load_checkpoint

    check_config(cfg, source=source)
    check_out_dir(out)
    ckpt = load_checkpoint(checkpoint)  # CheckpointError names the file
    if ckpt.spec is None:
        raise InputError(f"--checkpoint {checkpoint}: the checkpoint has no arch spec; "
                         "cannot prune it")
    if ckpt.spec.family != cfg.model.family:
        raise InputError(f"--checkpoint {checkpoint}: a {ckpt.spec.family!r} model, but the "
                         f"config's model.family is {cfg.model.family!r}")
    loaders = _loaders(cfg)
    if tuple(ckpt.spec.input_shape) != tuple(loaders.input_shape):
        raise InputError(f"--checkpoint {checkpoint}: model input {list(ckpt.spec.input_shape)} "
                         f"does not match the dataset {cfg.data.name!r} "
                         f"({list(loaders.input_shape)})")


def check_installed(module: str, *, what: str) -> None:
    """An explicitly requested optional part (its extra not installed) stops here, exit 2."""
    from .extras import hint, installed

    if not installed(module):
        raise InputError(f"{what} needs {module}, which is not installed: {hint(module)}")


def check_ray_address(address: str | None, *, timeout_s: float = 10.0) -> None:
    """``--ray-address HOST:PORT`` (or ``ray://HOST:PORT``) must answer on TCP before the
    search pre-trains or creates its study; Ray itself retries for minutes. ``auto`` and
    ``local`` are left to Ray (they look for a cluster on this machine)."""
    import socket

    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InputError(f"--ray-address {address!r}: expected HOST:PORT (e.g. 10.0.0.1:6379), "
                         "ray://HOST:PORT, auto or local")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise InputError(f"--ray-address {address}: nothing answers there ({e.strerror or e}); "
                         "start the head with `ray start --head --port=PORT` or fix the "
                         "address") from None


# What makes a run directory's results mean what they say: a different value in any of
# these fields is another experiment (search.trials, the backend, W&B and storage may change
# on a resume).
RUN_IDENTITY = ("name", "model", "data", "train", "prune", "finetune", "recovery", "scratch",
                "search.space", "search.cost", "search.accuracy", "search.study_name", "latency")


def check_run_identity(cfg: RunConfig, out: Path) -> None:
    """A run directory belongs to one config: ``--out`` holding a ``config.yaml`` that differs
    in :data:`RUN_IDENTITY` is refused before anything is written there."""
    path = out / "config.yaml"
    if not path.is_file():
        return
    try:
        old = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"--out {out}: its config.yaml cannot be read ({e}); use another "
                         "--out") from None
    if not isinstance(old, dict):  # not a config this program wrote: nothing to compare
        return
    from .config import RunConfig, migrate_config_dict

    # a run written before the one latency section holds its keys in the old places; one
    # that cannot be migrated is compared as written (it differs)
    with contextlib.suppress(ValueError):
        old = migrate_config_dict(old)
    # fields added since the run was written are missing from its dump: they read as their
    # defaults (what the run did); every field the dump holds is compared as written, so a
    # default that changed since is still a difference. A dump the types refuse is compared
    # as it is (pydantic's ValidationError is a ValueError).
    with contextlib.suppress(ValueError, TypeError):
        old = RunConfig.model_validate(old).model_dump(mode="json")
    new = cfg.model_dump(mode="json")

    def at(d: Any, dotted: str) -> Any:
        for part in dotted.split("."):
            d = d.get(part) if isinstance(d, dict) else None
        return d

    differ = [f for f in RUN_IDENTITY if at(old, f) != at(new, f)]
    if differ:
        raise InputError(f"--out {out} holds a run of another config (it differs in "
                         f"{', '.join(differ)}); a run directory belongs to one config: use "
                         "another --out, or the run's own config.yaml to resume it")


def preflight_search(cfg: RunConfig, *, out: Path, storage_url: str, study: str, backend: str,
                     resume: bool, pick: str, source: str, ray_address: str | None = None) -> None:
    """Everything a search can know is wrong before it pre-trains or writes a file."""

    check_config(cfg, source=source, search=True)
    if backend == "ray":
        check_installed("ray", what="the ray backend (search.backend / --backend ray)")
        check_ray_address(ray_address)
    _preflight_study(cfg, out=out, storage_url=storage_url, study=study, backend=backend,
                     resume=resume, pick=pick)
    # last: the checks above name the more precise mistake (an existing study, a backend)
    check_run_identity(cfg, out)


def _preflight_study(cfg: RunConfig, *, out: Path, storage_url: str, study: str, backend: str,
                     resume: bool, pick: str) -> None:
    from .search import objectives_for

    check_out_dir(out)
    check_pick(pick)
    check_name(study, field="study name")
    check_storage_url(storage_url)
    preflight_arch(cfg, None)
    if not _storage_exists(storage_url):
        return
    import optuna

    store, names = _study_names(storage_url, flag="--storage")
    if study not in names:
        return
    if not resume:
        raise InputError(f"study {study!r} already exists in {redact(storage_url)}; pass --resume to "
                         "continue it, or pick another --out / search.study_name")
    loaded = optuna.load_study(study_name=study, storage=store)
    had = loaded.user_attrs.get("backend")
    if had is not None and had != backend:
        raise InputError(f"--backend {backend}: study {study!r} was run with the {had} "
                         f"backend; resume it with --backend {had}")
    want = [(o.name, o.direction) for o in objectives_for(cfg)]
    have_dirs = [d.name.lower() for d in loaded.directions]
    have = list(zip(loaded.metric_names or [f"values_{i}" for i in range(len(have_dirs))],
                    have_dirs, strict=False))
    if have != want:
        raise InputError(f"search.cost {cfg.search.cost!r}: study {study!r} has objectives "
                         f"{have}, this config asks for {want}; use another study name")
    if cfg.search.times_latency:
        check_latency_resume(cfg, loaded.get_trials(deepcopy=False), study=study)
