"""docs/config.md is the config reference generated from the config types: it equals the
generator's output (regenerate with `python -m nas.config_doc --write docs/config.md`), and
every field of every section is in it with its meaning."""

from __future__ import annotations

from pathlib import Path

from nas.config_doc import SECTIONS, reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_the_reference_is_generated_from_the_config_types() -> None:
    assert DOC.read_text() == reference(), (
        "docs/config.md is stale: run python -m nas.config_doc --write docs/config.md")


def test_every_field_is_documented() -> None:
    text = reference()
    for path, cls in SECTIONS:
        section = text.split(f"## `{path}`\n", 1)[1].split("\n## ", 1)[0]
        for name in cls.model_fields:
            if name == "space":
                continue  # its own section
            if path == "finetune" and name not in ("epochs", "lr"):
                continue  # train's fields, documented there
            row = next((ln for ln in section.splitlines() if ln.startswith(f"| `{name}` |")),
                       None)
            assert row is not None, f"{path}.{name} is missing"
            meaning = row.rstrip("|").rsplit("|", 1)[1].strip()
            assert meaning, f"{path}.{name} has no comment in nas/config.py"
