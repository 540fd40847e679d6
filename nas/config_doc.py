"""The config reference (docs/config.md), generated from the config types themselves.

Every field of every section with its type, default, bounds and the comment written beside
it in :mod:`nas.config` - so a field, its default and its explanation live in one place and
the reference cannot drift (a test compares the file with this output).

``python -m nas.config_doc [--write docs/config.md]`` prints (or writes) it.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import annotated_types as at
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from nas import config as C

__all__ = ["reference", "main"]

# section path -> its type, in the order a config file is usually written
SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("model", C.ModelSection), ("data", C.DataSection), ("train", C.TrainSection),
    ("prune", C.PruneSection), ("finetune", C.FinetuneSection),
    ("recovery", C.RecoverySection), ("scratch", C.ScratchSection),
    ("search", C.SearchSection), ("search.space", C.SpaceSection), ("latency", C.LatencySection),
    ("wandb", C.WandbSection),
)

_BOUNDS = ((at.Gt, "gt", ">"), (at.Ge, "ge", ">="), (at.Lt, "lt", "<"), (at.Le, "le", "<="),
           (at.MinLen, "min_length", "at least {} item(s)"))


def _comments(cls: type) -> dict[str, tuple[str, str]]:
    """Field name -> (the comment block above it, its trailing comment), read off the class's
    source. A block above several fields belongs to the first of them."""
    src = inspect.getsource(cls)
    lines = src.splitlines()
    tree = ast.parse(src)
    body = tree.body[0].body  # type: ignore[attr-defined]
    out: dict[str, tuple[str, str]] = {}
    prev_end = 0
    for node in body:
        start, end = node.lineno, node.end_lineno or node.lineno
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above = [ln.strip()[1:].strip() for ln in lines[prev_end:start - 1]
                     if ln.strip().startswith("#")]
            line = lines[end - 1]
            trailing = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            out[node.target.id] = (" ".join(above), trailing)
        prev_end = end
    return out


def _annotation(cls: type, name: str) -> str:
    for klass in cls.__mro__:
        src_ann = getattr(klass, "__annotations__", {}).get(name)
        if src_ann is not None:
            text = src_ann if isinstance(src_ann, str) else getattr(src_ann, "__name__", str(src_ann))
            text = text.replace("Range", "range").replace("Literal[", "one of [")
            return text.replace("| None", "| null")
    return "?"


def _yaml(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(section)"
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text[:-4].strip() if text.endswith("...") else text


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        return f"`{_yaml(field.default_factory())}`"  # type: ignore[call-arg]
    return f"`{_yaml(field.default)}`"


def _bounds(field: FieldInfo) -> str:
    out = []
    for meta in field.metadata:
        for kind, attr, fmt in _BOUNDS:
            if isinstance(meta, kind):
                v = getattr(meta, attr)
                out.append(fmt.format(v) if "{}" in fmt else f"{fmt} {v}")
        if getattr(meta, "pattern", None):
            out.append(f"matches `{meta.pattern}`")
    return ", ".join(out)


def _clean(text: str) -> str:
    text = " ".join(text.split()).replace("``", "`")
    return text.replace("|", "\\|")


def _section(path: str, cls: type[BaseModel]) -> list[str]:
    doc = inspect.getdoc(cls) if cls.__doc__ else ""
    lines = [f"## `{path}`", ""]
    if doc and cls.__doc__ is not getattr(cls.__mro__[1], "__doc__", None):
        lines += [_clean(doc), ""]
    if cls is C.FinetuneSection:
        lines += ["The fine-tune after pruning: every field of `train`, with these defaults.", ""]
    comments: dict[str, tuple[str, str]] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__ == C.__name__ and klass is not C._Strict:
            comments.update(_comments(klass))
    lines += ["| field | type | default | bounds | meaning |", "|---|---|---|---|---|"]
    own = cls.model_fields
    names = list(own)
    if cls is C.FinetuneSection:
        names = [n for n in names if n in C.FinetuneSection.__annotations__]
    for name in names:
        field = own[name]
        if isinstance(field.default_factory, type) and issubclass(field.default_factory,
                                                                  BaseModel):
            continue  # a nested section has its own table
        above, trailing = comments.get(name, ("", ""))
        meaning = " ".join(t for t in (above, trailing) if t)
        lines.append(f"| `{name}` | {_clean(_annotation(cls, name))} | {_default(field)} | "
                     f"{_bounds(field)} | {_clean(meaning)} |")
    return lines + [""]


def reference() -> str:
    """The whole reference as markdown."""
    lines = [
        "# Config reference",
        "",
        "Generated from the config types in `nas/config.py` by `python -m nas.config_doc "
        "--write docs/config.md` (a test keeps it equal to them). A config is one YAML file;",
        "`name`, `model` and `data` are required, every other section is optional. Unknown",
        "keys and bad values stop the job before any work, naming the field (exit code 2).",
        "Any field can be set on the command line: `--set train.epochs=3`. A `range` is",
        "`{low: X, high: Y}` (add `log: true` for a log scale). How the sections work",
        "together: [usage.md](usage.md).",
        "",
        "| field | type | meaning |",
        "|---|---|---|",
        "| `name` | str | the run's name: the study, the W&B group, the summary |",
        "",
    ]
    for path, cls in SECTIONS:
        lines += _section(path, cls)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m nas.config_doc", description=__doc__)
    p.add_argument("--write", type=Path, default=None, help="write the reference here")
    args = p.parse_args(argv)
    text = reference()
    if args.write:
        args.write.write_text(text)
        print(f"wrote {args.write}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
