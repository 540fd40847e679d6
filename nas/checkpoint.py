"""Checkpoints: safetensors weights plus a JSON sidecar that says how to rebuild the model.

A checkpoint with stem ``runs/x/best`` is

- ``best.safetensors``: the full state dict (parameters *and* buffers, e.g. BN running
  statistics and ``num_batches_tracked``); never pickled;
- ``best.json``: the :class:`~search_spaces.ArchSpec` as a dict, the config and metrics the
  caller passed, versions of torch / torchvision / entropic-nas, a UTC timestamp and the
  SHA-256 of the weights file;
- ``best.state.pt`` (only when ``extra_state`` is given): resume state such as optimizer
  moments and RNG states, written with ``torch.save`` and read with ``weights_only=True``.

Every file is written to a temporary name and renamed into place, so a crash never leaves
a half-written file under the final name. :func:`load_checkpoint` rebuilds the model from
the spec with :func:`search_spaces.build` and loads the weights strictly.

Example:
    >>> save_checkpoint("runs/x/best", model, spec, metrics={"val_acc": 0.99})
    >>> ckpt = load_checkpoint("runs/x/best")
    >>> ckpt.model, ckpt.spec, ckpt.metrics
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import platform
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from nas.jsonio import respect_umask
from search_spaces import ArchSpec, SpecError, build

CHECKPOINT_FORMAT = "entropic-nas-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
DEFAULT_STEM = "model"
WEIGHTS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
STATE_SUFFIX = ".state.pt"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not fit the model; the message names the file."""


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model: The rebuilt model with the weights loaded (on the requested device).
        spec: Its architecture spec (``None`` only for checkpoints saved without one).
        config: The config saved with it (plain JSON data) or ``None``.
        metrics: The metrics saved with it or ``None``.
        extra_state: The ``extra_state`` saved with it (resume state) or ``None``.
        meta: The whole sidecar (versions, timestamp, checksum, ...).
        path: The weights file.
    """

    model: nn.Module
    spec: ArchSpec | None
    config: dict[str, Any] | None
    metrics: dict[str, Any] | None
    extra_state: dict[str, Any] | None
    meta: dict[str, Any]
    path: Path


def checkpoint_paths(path: str | Path) -> tuple[Path, Path, Path]:
    """``(weights, sidecar, state)`` paths for a directory, a stem or any of the three files.

    An existing directory (or a path ending in ``/``) means ``<dir>/model.*``; a path ending
    in ``.safetensors``, ``.json`` or ``.state.pt`` names its stem; anything else is a stem.
    """
    raw = str(path)
    p = Path(path)
    if p.is_dir() or raw.endswith(("/", os.sep)):
        stem = p / DEFAULT_STEM
    elif p.name.endswith(STATE_SUFFIX):
        stem = p.with_name(p.name[: -len(STATE_SUFFIX)])
    elif p.suffix in (WEIGHTS_SUFFIX, SIDECAR_SUFFIX):
        stem = p.with_suffix("")
    else:
        stem = p
    return (stem.with_name(stem.name + WEIGHTS_SUFFIX),
            stem.with_name(stem.name + SIDECAR_SUFFIX),
            stem.with_name(stem.name + STATE_SUFFIX))


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    spec: ArchSpec | None,
    *,
    config: Any = None,
    metrics: Mapping[str, Any] | None = None,
    extra_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights, spec, config and metrics; return the weights path.

    Args:
        path: A directory (``<dir>/model.safetensors``) or a stem (``runs/x/best``).
        model: Any module; its full ``state_dict`` (buffers included) is saved.
        spec: The architecture to rebuild it from; ``None`` for models outside the registry
            (then :func:`load_checkpoint` needs ``model=``).
        config: A dataclass, pydantic model or mapping; stored as JSON.
        metrics: JSON-serialisable numbers and strings.
        extra_state: Resume state (optimizer state dict, RNG states, ...): tensors,
            numbers, strings, lists and dicts only, so it loads with ``weights_only=True``.
    """
    weights, sidecar, state = checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    st_meta = {"format": "pt"}
    if spec is not None:
        st_meta["arch_spec"] = json.dumps(spec.to_dict(), sort_keys=True)
    _atomic(weights, lambda tmp: save_file(tensors, str(tmp), metadata=st_meta))
    if extra_state is not None:
        _atomic(state, lambda tmp: torch.save(dict(extra_state), str(tmp)))
    elif state.exists():
        state.unlink()  # a stale resume state must never pair with these weights
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "weights": weights.name,
        "weights_sha256": _sha256(weights),
        "arch_spec": spec.to_dict() if spec is not None else None,
        "config": _jsonable(config),
        "metrics": _jsonable(metrics),
        "has_extra_state": extra_state is not None,
        "versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    text = json.dumps(meta, indent=2, allow_nan=True) + "\n"
    _atomic(sidecar, lambda tmp: tmp.write_text(text))
    return weights


def load_checkpoint(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    model: nn.Module | None = None,
    verify: bool = True,
) -> Checkpoint:
    """Rebuild the model from the sidecar's spec and load its weights strictly.

    Args:
        path: Directory, stem, or any of the checkpoint's files (see :func:`checkpoint_paths`).
        device: Where the returned model lives.
        model: Load into this module instead of building one from the spec (needed for
            checkpoints saved with ``spec=None``).
        verify: Check the weights file against the SHA-256 in the sidecar.

    Raises:
        CheckpointError: A file is missing, unreadable or corrupt, the spec is invalid, or a
            tensor is missing, unexpected or of the wrong shape; the message names the file
            and the tensor.
    """
    weights, sidecar, state = checkpoint_paths(path)
    meta = _read_sidecar(sidecar)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file not found (sidecar {sidecar} exists)")
    if verify and meta.get("weights_sha256") and _sha256(weights) != meta["weights_sha256"]:
        raise CheckpointError(
            f"{weights}: SHA-256 does not match {sidecar.name} (file changed or corrupt)"
        )
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: cannot read safetensors ({exc})") from None
    check_finite(tensors, source=weights)

    spec = None
    if meta.get("arch_spec") is not None:
        try:
            spec = ArchSpec.from_dict(meta["arch_spec"])
        except SpecError as exc:
            raise CheckpointError(f"{sidecar}: invalid arch_spec: {exc}") from None
    if model is None:
        if spec is None:
            raise CheckpointError(
                f"{sidecar}: no arch_spec saved; pass model= to load the weights into"
            )
        model = build(spec)
    load_weights_strict(model, tensors, source=weights)
    model.to(device)

    extra = None
    if meta.get("has_extra_state"):
        if not state.is_file():
            raise CheckpointError(f"{state}: resume state file not found ({sidecar.name} lists one)")
        try:
            extra = torch.load(str(state), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for truncated zip files
            raise CheckpointError(f"{state}: cannot read resume state ({exc})") from None
    return Checkpoint(model=model, spec=spec, config=meta.get("config"),
                      metrics=meta.get("metrics"), extra_state=extra, meta=meta, path=weights)


def non_finite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an inf."""
    return [k for k, v in tensors.items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check_finite(tensors: Mapping[str, torch.Tensor], *, source: str | Path) -> None:
    """Refuse weights with NaN or inf (a diverged run saved as if it were a model): nothing is
    trained from, pruned or exported from them. The message names the tensors."""
    bad = non_finite(tensors)
    if bad:
        raise CheckpointError(f"{source}: non-finite values (NaN/inf) in "
                              f"{_preview(bad)}; these weights are not a usable model")


def load_weights_strict(model: nn.Module, tensors: Mapping[str, torch.Tensor], *,
                        source: str | Path = "<tensors>") -> None:
    """``model.load_state_dict(tensors, strict=True)`` with errors that name the tensor.

    A ``<layer>.bias`` in ``tensors`` for a Conv2d / Linear built without a bias is the
    intercept the pruning refit added (a consumer with neither a bias nor a BatchNorm after
    it, e.g. DenseNet's growth convs): the layer gets a bias parameter to hold it.
    """
    own = model.state_dict()
    mods = dict(model.named_modules())
    for key in set(tensors) - set(own):
        layer, _, leaf = key.rpartition(".")
        mod = mods.get(layer)
        if (leaf == "bias" and isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.bias is None
                and tuple(tensors[key].shape) == (mod.weight.shape[0],)):
            mod.bias = nn.Parameter(torch.zeros(mod.weight.shape[0], dtype=mod.weight.dtype,
                                                device=mod.weight.device))
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensor(s) {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected tensor(s) {_preview(unexpected)}")
        raise CheckpointError(f"{source}: does not fit the model: {'; '.join(parts)}")
    for key, value in own.items():
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{source}: tensor {key!r} has shape {tuple(tensors[key].shape)} in the file "
                f"but {tuple(value.shape)} in the model (layer {key.rsplit('.', 1)[0]!r}); "
                "the checkpoint was saved for another architecture spec"
            )
    state = OrderedDict(tensors)
    # the module versions of a fresh state dict (torchvision's MNASNet refuses weights
    # without them; a safetensors file cannot carry them)
    state._metadata = getattr(own, "_metadata", None)  # type: ignore[attr-defined]
    model.load_state_dict(state, strict=True)


# -- helpers --------------------------------------------------------------------------------


def _read_sidecar(sidecar: Path) -> dict[str, Any]:
    if not sidecar.is_file():
        raise CheckpointError(f"{sidecar}: checkpoint sidecar not found")
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{sidecar}: not a valid checkpoint sidecar ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{sidecar}: not an entropic-nas checkpoint sidecar")
    if meta.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{sidecar}: format_version {meta.get('format_version')!r} is not supported "
            f"(this entropic-nas reads {CHECKPOINT_FORMAT_VERSION})"
        )
    return meta


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        respect_umask(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "model_dump"):  # pydantic v2
        return _jsonable(obj.model_dump(mode="json"))
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return str(obj)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("torchvision", "entropic-nas", "safetensors"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _preview(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


__all__ = [
    "Checkpoint",
    "CheckpointError",
    "checkpoint_paths",
    "load_checkpoint",
    "load_weights_strict",
    "save_checkpoint",
]


def load_state_dict_file(path: str | Path, *, field: str = "model.weights") -> dict[str, torch.Tensor]:
    """A user's trained weights as a state dict: ``.safetensors``, or a torch file read with
    ``weights_only=True`` (a bare state dict, or one under ``"state_dict"`` / ``"model"``);
    DataParallel's ``module.`` prefixes are dropped.

    Raises:
        CheckpointError: naming ``field`` and the file: missing, unreadable, or not a
            mapping of names to tensors.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{field}: {p} not found")
    try:
        if p.suffix == ".safetensors":
            data: Any = load_file(str(p))
        else:
            data = torch.load(p, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{field}: cannot read {p} as weights ({e})") from None
    except pickle.UnpicklingError as e:  # a pickled object (a whole module ...): never loaded
        first = str(e).splitlines()[0][:200]
        raise CheckpointError(f"{field}: {p} holds pickled objects, not only tensors; save "
                              f"model.state_dict() instead ({first})") from None
    if isinstance(data, Mapping):
        for key in ("state_dict", "model"):
            inner = data.get(key)
            if isinstance(inner, Mapping) and inner and all(
                    isinstance(v, torch.Tensor) for v in inner.values()):
                data = inner
                break
    if not isinstance(data, Mapping) or not data or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        raise CheckpointError(f"{field}: {p} holds no state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in data.items()}


def load_weights_into(model: nn.Module, path: str | Path, *, field: str = "model.weights") -> None:
    """Load :func:`load_state_dict_file` strictly into ``model`` (:func:`load_weights_strict`:
    a mismatch names the tensors); non-finite values are refused."""
    sd = load_state_dict_file(path, field=field)
    check_finite(sd, source=f"{field}: {path}")
    own = model.state_dict()
    load_weights_strict(model, {k: v.to(own[k].dtype) if k in own else v for k, v in sd.items()},
                        source=f"{field}: {path}")
