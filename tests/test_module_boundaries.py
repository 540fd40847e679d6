"""No private name is imported across modules of pruning/, nas/ or search_spaces/, and no
package imports one above it (pruning knows torch only; search_spaces knows pruning; nas
drives both). Tests may reach privates on purpose; the packages may not."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pruning", "search_spaces", "nas")
# what each package may import from the project
ALLOWED = {"pruning": {"pruning"}, "search_spaces": {"search_spaces", "pruning"},
           "nas": {"nas", "search_spaces", "pruning"}}


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every from-import in ``path``."""
    pkg_parts = list(path.relative_to(ROOT).with_suffix("").parts)[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
    return out


def _files() -> list[Path]:
    return [f for pkg in PACKAGES for f in sorted((ROOT / pkg).rglob("*.py"))]


def test_no_private_name_is_imported_across_modules() -> None:
    bad = []
    for f in _files():
        for line, module, names in _imports(f):
            if module.split(".")[0] not in PACKAGES:
                continue
            bad += [f"{f.relative_to(ROOT)}:{line} {module}.{n}" for n in names
                    if n.startswith("_") and not n.startswith("__")]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_no_package_imports_upwards() -> None:
    bad = []
    for f in _files():
        pkg = f.relative_to(ROOT).parts[0]
        for line, module, _ in _imports(f):
            top = module.split(".")[0]
            if top in PACKAGES + ("benchmarks", "tests") and top not in ALLOWED[pkg]:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_import_cycle_inside_a_package() -> None:
    """Module-level imports between the modules of each package (its ``__init__`` files
    included) form no cycle; imports inside functions, which run later, are not edges."""
    for pkg in PACKAGES:
        graph: dict[str, set[str]] = {}
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            mod = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            deps = set()
            for node in ast.parse(f.read_text()).body:  # module level only
                if not isinstance(node, ast.ImportFrom):
                    continue
                if node.level:
                    base = list(parts[:-1])[: len(parts) - node.level]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                if name.startswith(pkg + ".") and name != mod and not mod.startswith(name + "."):
                    deps.add(name)
            graph[mod] = deps
        state: dict[str, int] = {}

        def visit(m: str, path: list[str], graph: dict[str, set[str]] = graph,
                  state: dict[str, int] = state) -> None:
            state[m] = 1
            for d in graph.get(m, ()):
                if state.get(d) == 1:
                    raise AssertionError("import cycle: " + " -> ".join(path + [m, d]))
                if state.get(d) is None:
                    visit(d, path + [m])
            state[m] = 2

        for m in graph:
            if m not in state:
                visit(m, [])
