"""benchmarks/ is a package of ``python -m benchmarks.NAME`` modules that use only public
engine names, and docs/results.md is what ``python -m benchmarks.report`` renders from the
committed results."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import benchmarks

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__))
# a private name of an engine module (pruning.sparsify._capture, reg._evaluate, ...)
PRIVATE = re.compile(r"\b(?:pruning\.)?(?:sp|reg|sparsify|regression|moments|surgery|activations"
                     r"|measure)\._[A-Za-z]")


def test_every_benchmark_imports_as_a_module() -> None:
    assert {"common", "report", "vgg_pass", "post_training"} <= set(MODULES)
    for name in MODULES:
        importlib.import_module(f"benchmarks.{name}")


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_path_patching_and_no_private_engine_names(path: Path) -> None:
    text = path.read_text()
    assert "sys.path" not in text
    assert not PRIVATE.findall(text), PRIVATE.findall(text)
    assert not re.search(r"from pruning(\.\w+)? import [^\n]*\b_\w", text)


def test_docs_are_the_rendered_results(tmp_path: Path) -> None:
    from benchmarks.report import load_results, render

    results_md, headline = render(load_results(ROOT / "benchmarks" / "results"), tmp_path)
    assert results_md == (ROOT / "docs" / "results.md").read_text(), \
        "docs/results.md is stale: run `python -m benchmarks.report`"
    assert headline == (ROOT / "docs" / "results_headline.md").read_text()


def test_readme_tables_are_the_rendered_results(tmp_path: Path) -> None:
    """The README's marked tables are what ``python -m benchmarks.report`` writes there."""
    from benchmarks.report import README_BLOCKS, load_results, update_readme

    readme = ROOT / "README.md"
    copy = tmp_path / "README.md"
    copy.write_text(readme.read_text())
    done = update_readme(copy, load_results(ROOT / "benchmarks" / "results"))
    assert set(done) == set(README_BLOCKS), "a README table lost its markers"
    assert copy.read_text() == readme.read_text(), \
        "a README table is stale: run `python -m benchmarks.report`"


def test_readme_block_is_replaced_between_its_markers_only(tmp_path: Path) -> None:
    from benchmarks.report import update_readme

    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- cifar_fast_summary -->\nold table\n<!-- /cifar_fast_summary -->"
                      "\nafter\n")
    rows = {"base/s0": {"kind": "base", "seed": 0, "ratio": None, "macs": 1e8, "params": 2e6, "epochs": 24,
                        "test_acc_tta": 0.9}}
    assert update_readme(readme, {"cifar_fast.json": {"rows": rows}}) == ["cifar_fast_summary"]
    text = readme.read_text()
    assert text.startswith("before\n<!-- cifar_fast_summary -->\n| arm |")
    assert "old table" not in text and "| unpruned base, 24 epochs | 1 |" in text
    assert text.endswith("<!-- /cifar_fast_summary -->\nafter\n")
    assert update_readme(readme, {}) == []  # no results: left as it is
    assert readme.read_text() == text
    readme.write_text("<!-- /cifar_fast_summary -->\n<!-- cifar_fast_summary -->\n")
    with pytest.raises(SystemExit, match="comes before"):
        update_readme(readme, {"cifar_fast.json": {"rows": rows}})


def test_retired_benchmarks_have_no_code_and_keep_their_sections(tmp_path: Path) -> None:
    """A retired benchmark's module (and renderer) is gone; its section is still in the report,
    under the note naming the commit with its code (a frozen renderer's text, or the JSON)."""
    from benchmarks.report import RETIRED, SECTIONS, frozen, load_results, render

    loaded = load_results(ROOT / "benchmarks" / "results")
    results_md, _ = render(loaded, tmp_path)
    for name, commit in RETIRED.items():
        assert name not in MODULES
        assert not (ROOT / "benchmarks" / "report" / f"{name}.py").exists()
        assert f"git show {commit}:benchmarks/{name}.py" in results_md
        if SECTIONS.get(name) is frozen:
            runs = {n: d for n, d in loaded.items() if d.get("benchmark") == name}
            assert any("rendered" in d for d in runs.values()), name
            assert frozen(runs).partition("\n")[2] in results_md  # the note follows the heading
