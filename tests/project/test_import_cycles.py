"""The modules of each package (the core, both twins and the application) import each
other without cycles, counting every import at any depth (a function-level import that closes a cycle
is a helper in the wrong module, even if it works). A cycle is reported with the line of each import
that closes it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

ROOT = REPO
PACKAGE = "convnext_common"
PACKAGES = ("convnext_common", "convnext_pt", "convnext_tf", "convnext_app")  # convnext_keras is one module


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (under ``root``) by dotted name; a package by its own name."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> dict[str, int]:
    """The modules of ``known`` that ``name`` (at ``path``) imports anywhere in its source, each with
    the line of its first import."""
    is_package = path.name == "__init__.py"
    out: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # "from pkg import sub" imports the submodule; "from mod import attr" the module
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # "import a.b.c" of a module a.b.c, or an attribute's module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.setdefault(target, node.lineno)
    return out


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, dict[str, int]]:
    """For each module of ``package``, the package's modules it imports and the line of each import."""
    known = module_names(root, package)
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def describe_cycle(cycle: list[str], root: Path = ROOT) -> str:
    """The cycle as the import lines that close it: ``a.py:12 imports b`` for each step."""
    known = {name: path for name in cycle for path in [_module_path(root, name)]}
    graph = {name: imported_modules(name, known[name], module_names(root, cycle[0].split(".")[0]))
             for name in cycle[:-1]}
    return "; ".join(f"{known[a].relative_to(root).as_posix()}:{graph[a][b]} imports {b}"
                     for a, b in zip(cycle, cycle[1:]))


def _module_path(root: Path, name: str) -> Path:
    base = root.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@pytest.mark.parametrize("package", PACKAGES)
def test_package_has_no_import_cycles(package):
    graph = import_graph(ROOT, package)
    assert len(graph) > 1 and any(graph.values()), "the graph came out empty: the walk is broken"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + describe_cycle(cycle)


@pytest.mark.parametrize("source, expected", [
    # a cycle closed by an import inside a function still counts
    ({"a": "from . import b\n", "b": "def f():\n    from .a import x\n"}, ["pkg.a", "pkg.b", "pkg.a"]),
    ({"a": "from .sub.c import y\n", "sub/c": "from ..a import x\n"}, ["pkg.a", "pkg.sub.c", "pkg.a"]),
    ({"a": "import pkg.b\n", "b": "x = 1\n"}, None),
])
def test_the_check_finds_cycles(tmp_path, source, expected):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    for name, text in source.items():
        (tmp_path / "pkg" / f"{name}.py").write_text(text)
    cycle = find_cycle(import_graph(tmp_path, "pkg"))
    assert cycle == expected
    if expected:  # the report names the import lines
        assert describe_cycle(cycle, tmp_path).startswith("pkg/a.py:1 imports pkg.")
