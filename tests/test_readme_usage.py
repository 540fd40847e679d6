"""The README's "prune or search your own model" snippets stay true: the YAML validates as a
run config (a torchvision model by name), the Python snippet compiles and names only public
functions that exist."""

from __future__ import annotations

import ast
import copy
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


def test_every_set_in_the_readmes_commands_validates_on_its_config() -> None:
    """Each `entropic-nas ... --config my_resnet.yaml --set ...` command of the README (the
    budgeted prune, the post-training search) gives a valid config."""
    import shlex

    from nas.cli import _parse_set
    from nas.config import config_from_dict

    base = yaml.safe_load(_blocks("yaml")[0])
    block = next(b for b in _blocks("bash") if "my_resnet.yaml" in b)
    commands = block.replace("\\\n", " ").splitlines()
    checked = 0
    for line in commands:
        words = shlex.split(line, comments=True)
        if "my_resnet.yaml" not in words or "--set" not in words:
            continue
        sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
        data = copy.deepcopy(base)
        for key, value in _parse_set(sets).items():
            node = data
            *parents, last = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = value
        cfg = config_from_dict(data, source="README")
        assert cfg.prune.target_macs == 0.5
        checked += 1
    assert checked == 2  # the prune and the post-training search
