"""The README's "prune or search your own model" snippets stay true: the YAML validates as a
run config (a torchvision model by name), the Python snippet compiles and names only public
functions that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

import nas
import pruning
from nas.config import RunConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_the_own_model_config_validates() -> None:
    raw = yaml.safe_load(_blocks("yaml")[0])
    cfg = RunConfig.model_validate(raw)
    assert cfg.model.family == "torchvision:resnet18"
    assert len(_blocks("yaml")[0].strip().splitlines()) < 15  # the "under 15 lines"


def test_the_python_snippet_compiles_and_calls_public_names() -> None:
    code = _blocks("python")[0]
    assert len(code.strip().splitlines()) < 10
    tree = ast.parse(code)
    called = {f"{n.value.id}.{n.attr}" for n in ast.walk(tree)
              if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    for name in called:
        mod, attr = name.split(".")
        if mod == "nas":
            assert attr in nas.__all__, name
        elif mod == "pruning":
            assert attr in pruning.__all__, name
