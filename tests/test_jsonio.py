"""nas.jsonio: strict JSON (NaN/inf -> null, tensors / paths / numpy as plain values), atomic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from nas.jsonio import clean, dumps, write_json


def test_clean_makes_strict_json() -> None:
    data = {1: math.nan, "inf": [math.inf, -math.inf, 1.5], "t": (1, 2), "p": Path("a/b"),
            "dev": torch.device("cpu"), "x": torch.tensor(3.0), "n": np.float32(0.5),
            "arr": np.arange(3), "b": np.bool_(True), "s": {"b", "a"}}
    out = clean(data)
    assert out == {"1": None, "inf": [None, None, 1.5], "t": [1, 2], "p": "a/b", "dev": "cpu",
                   "x": 3.0, "n": 0.5, "arr": [0, 1, 2], "b": True, "s": ["a", "b"]}
    assert json.loads(dumps(data)) == out


def test_write_json_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    path = write_json(tmp_path / "sub" / "r.json", {"v": math.nan})
    assert json.loads(path.read_text()) == {"v": None}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
