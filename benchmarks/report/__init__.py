"""Render ``benchmarks/results/*.json`` into docs/results.md (+ docs/results_headline.md, figures).

Every number in the report comes from those JSON files; nothing is typed in by hand. One
module per benchmark with a dedicated section (``lenet_mnist``,
``vgg_pass``); any other result JSON is rendered by :mod:`.generic` (``tables`` entries as
they are, lists of records as tables, scalars as key/value lists). Quick smoke runs (a
``"quick": true`` file or a ``*_quick.json`` name) are left out when a full run of the same
benchmark exists. Run directories (``runs/``, gitignored) are never rendered.

Usage::

    .venv/bin/python -m benchmarks.report
    .venv/bin/python -m benchmarks.report --results benchmarks/results --docs docs

A new benchmark ``NAME`` gets a section by adding ``benchmarks/report/NAME.py`` with
``render(runs: dict[str, dict]) -> str`` (``runs``: file name -> JSON of every full run of
that benchmark) and an entry in :data:`SECTIONS`.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.report import cifar_fast, post_training, vgg_pass
from benchmarks.report.deviations import DEVIATIONS
from benchmarks.report.fmt import ROOT
from benchmarks.report.generic import render_generic
from benchmarks.report.lenet_mnist import render_lenet


def frozen(runs: dict[str, dict[str, Any]], figdir: Path | None = None) -> str:
    """A retired benchmark's section as its renderer last wrote it (the ``"rendered"`` key
    of its JSON, stored when the renderer was removed with the benchmark's code)."""
    return "\n".join(d["rendered"] for d in runs.values() if "rendered" in d)


# benchmark -> section over all its runs; placed after the LeNet-5 entropic section, in order
# each takes (runs, figdir): figures go into docs/figures of the docs being rendered
SECTIONS: dict[str, Callable[[dict[str, dict[str, Any]], Path], str]] = {
    "cifar_fast": cifar_fast.render,
    "train_speed": frozen,
    "vgg_pass": vgg_pass.render,
    "budget_hit": frozen,
    "post_training": post_training.render,
    "post_training_speed": post_training.render_speed,
    "post_training_calib": post_training.render_calib,
    "post_training_equal": post_training.render_equal,
}

# Benchmarks whose question is answered and whose code was removed (their defaults are in the
# engine): name -> the commit that still has benchmarks/NAME.py (and the section's renderer,
# benchmarks/report/NAME.py, where it had one: its text is frozen in the JSON, ``frozen``).
# Their results stay as measured.
RETIRED = {
    "lenet_diagnostics": "ce82acb",  # ablations of an early engine on LeNet-5
    "moments_dtype": "ce82acb",  # float32 moment products: the default since
    "solver_cost": "ce82acb",  # one solve vs d and T
    "latency_costs": "ce82acb",  # per-layer timings as a latency currency
    "train_speed": "ce82acb",  # the fast family's base: s / epoch per setting
    # budget landing, pass cost and LeNet-5 arms of the entropic plan (the greedy plan is
    # the budget's default now; its pass, peers and recovery: post_training)
    "budget_hit": "f67ddbb",
    # the LeNet-5 NSGA-II search against the eps grid: its front dominates 9 of 12 seed-0
    # grid points; the search itself is the product's `entropic-nas search`
    "lenet_search": "3bd80a5",
}


def retired_note(text: str, benchmark: Any) -> str:
    """``text`` (a section) with a line under its heading saying where a retired benchmark's
    code is (unchanged for any other benchmark)."""
    commit = RETIRED.get(benchmark) if isinstance(benchmark, str) else None
    if commit is None:
        return text
    head, sep, rest = text.partition("\n")
    note = (f"\n*Retired benchmark: the question is answered and its code removed; these rows "
            f"are as measured, by `git show {commit}:benchmarks/{benchmark}.py`.*\n")
    return head + sep + note + rest


CONVENTIONS = (
    "Conventions: **sparsity** = removed weights of conv + "
    "linear layers (biases included) / original count; **MACs** of conv + linear layers "
    "per image, **FLOPs = 2 × MACs**; **memory** = fp32 size of the state dict in MiB; "
    "**latency** = median batch time at the stated batch size, device and thread count, "
    "warm-up excluded. Accuracies are test-set accuracies in % unless marked val; "
    "± is the standard deviation over seeds.\n")


def is_quick(name: str, data: Any) -> bool:
    return bool(isinstance(data, dict) and (data.get("quick") or "_quick" in name))


def load_results(results: Path) -> dict[str, Any]:
    """File name -> parsed JSON of every ``results/*.json`` (unreadable ones skipped, said)."""
    loaded: dict[str, Any] = {}
    for f in sorted(Path(p) for p in glob.glob(str(results / "*.json"))):
        try:
            loaded[f.name] = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"skip {f}: {exc}", file=sys.stderr)
    return loaded


def render(loaded: dict[str, Any], docs: Path) -> tuple[str, str]:
    """``(results.md, results_headline.md)`` text; writes the figures under ``docs/figures``."""
    figdir = docs / "figures"

    def bench(d: Any) -> Any:
        return d.get("benchmark") if isinstance(d, dict) else None

    full = {n: d for n, d in loaded.items() if not is_quick(n, d)}
    full_benchmarks = {bench(d) for d in full.values() if isinstance(d, dict)}
    grouped = {b: {n: d for n, d in full.items() if bench(d) == b} for b in SECTIONS}
    early = [retired_note(SECTIONS[b](runs, figdir), b)
             for b, runs in grouped.items() if runs]  # after the LeNet section
    skipped: list[str] = []
    sections: list[str] = []
    headline = ""
    for name in sorted(loaded, key=lambda n: (0 if n == "lenet_mnist.json" else 1, n)):
        data = loaded[name]
        if name in full and bench(data) in SECTIONS:  # in its section above
            continue
        if is_quick(name, data) and bench(data) in full_benchmarks:
            skipped.append(name)
            continue
        if bench(data) == "lenet_mnist":
            md, hl = render_lenet(data, figdir, docs, name)
            sections.append(md)
            if not data.get("quick") and not headline:
                headline = hl
        else:
            title = data.get("title", name) if isinstance(data, dict) else name
            sections.append(retired_note(
                render_generic(data, str(title), f"benchmarks/results/{name}"), bench(data)))
    head = ["# Results\n",
            "Generated by `python -m benchmarks.report` from `benchmarks/results/*.json`; do "
            "not edit by hand (rerun the renderer).\n", CONVENTIONS]
    if not sections and not early:
        head.append("No results yet.\n")
    lenet_at = next((i for i, sec in enumerate(sections)
                     if sec.startswith("## LeNet-5 / MNIST: entropic")), -1)
    sections[lenet_at + 1:lenet_at + 1] = early
    sections.append(DEVIATIONS)
    if skipped:
        sections.append("## Not rendered\n\nQuick smoke runs superseded by a full run of the "
                        "same benchmark: " + ", ".join(f"`{n}`" for n in skipped) + ".\n")
    return "\n".join(head + sections), headline


README_BLOCKS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    # marker name -> (results file, its table) for the README's generated tables
    "cifar_fast_summary": ("cifar_fast.json",
                           lambda data: cifar_fast.summary_markdown(data, min_seeds=2)),
}


def update_readme(readme: Path, loaded: dict[str, Any]) -> list[str]:
    """Replace each ``<!-- NAME -->`` ... ``<!-- /NAME -->`` block of the README with its
    table rendered from the results (the prose around it stays hand-written); returns the
    names of the blocks replaced. A block whose results file is missing is left as it is."""
    text = readme.read_text()
    done = []
    for name, (fname, table) in README_BLOCKS.items():
        start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        if start not in text or end not in text or fname not in loaded:
            continue
        if text.index(end) < text.index(start):
            raise SystemExit(f"{readme}: the marker {end} comes before {start}; put the "
                             "table's end marker after its start marker")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{table(loaded[fname])}{end}{tail}"
        done.append(name)
    readme.write_text(text)
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report",
                                 description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks/results")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md",
                    help="README whose marked tables are re-rendered (a missing file is skipped)")
    args = ap.parse_args(argv)
    docs: Path = args.docs
    loaded = load_results(args.results)
    results_md, headline = render(loaded, docs)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "results.md").write_text(results_md)
    if headline:
        (docs / "results_headline.md").write_text(headline)
    blocks = update_readme(args.readme, loaded) if args.readme.is_file() else []
    print(f"wrote {docs / 'results.md'}"
          + (f" and {docs / 'results_headline.md'}" if headline else "")
          + (f"; README tables: {', '.join(blocks)}" if blocks else ""))
    return 0
