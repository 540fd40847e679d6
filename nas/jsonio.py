"""Strict JSON for result files: one sanitiser and one atomic writer (nas and benchmarks).

:func:`clean` turns a result into plain JSON values: non-finite floats become ``null``
(strict JSON has no NaN/inf), tuples lists, paths / devices / dtypes strings, 0-d tensors and
numpy scalars Python numbers, dataclasses and pydantic models their fields. :func:`write_json`
writes ``clean(data)`` atomically (a temporary file in the same folder, then a rename), so a
reader or a killed writer never sees half a file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["clean", "dumps", "respect_umask", "write_json"]


def clean(value: Any) -> Any:
    """``value`` as JSON-ready builtins; NaN and +-inf become None."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [clean(v) for v in items]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return clean(dataclasses.asdict(value))
    if hasattr(value, "model_dump"):  # pydantic
        return clean(value.model_dump(mode="json"))
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # tensor / numpy scalar
        return clean(value.item())
    if hasattr(value, "tolist"):  # numpy array / tensor
        return clean(value.tolist())
    return str(value)  # Path, torch.device, dtype, ...


def dumps(data: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text of ``clean(data)`` (raises on nothing JSON cannot hold)."""
    return json.dumps(clean(data), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` to ``path`` atomically (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(dumps(data, indent=indent) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def respect_umask(path: str | os.PathLike[str]) -> None:
    """Give ``path`` the mode a plain ``open()`` would (0666 less the umask): writers that go
    through a private temporary file (safetensors' ``save_file``) leave 0600, unreadable to
    the other users of a shared run directory."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
