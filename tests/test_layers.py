"""Packages import one way: ``experiments`` over ``engine`` over ``policies``; ``simulators``
alone (DESIGN.md, "Rules that keep the house simple").

Every module of every package is parsed with ``ast`` and each import counts: ``import x``,
``from x import y``, imports inside functions and ``if TYPE_CHECKING:`` blocks, and
``importlib.import_module("x")`` / ``__import__("x")`` with a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Which of the other packages each package may import (DESIGN.md's table).
ALLOWED: dict[str, frozenset[str]] = {
    "policies": frozenset(),
    "simulators": frozenset(),
    "engine": frozenset({"policies"}),
    "experiments": frozenset({"engine", "policies", "simulators"}),
}


def _imported_names(tree: ast.AST) -> Iterable[tuple[str, int]]:
    """Absolute module names a module imports, with the relative level of ``from`` imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if (name in ("import_module", "__import__") and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
                yield node.args[0].value, 0


def package_imports(root: Path, packages: Iterable[str]) -> set[tuple[str, str, str]]:
    """``(file, importing package, imported package)`` for every import, in any module under
    ``root/<package>/``, of one of ``packages`` other than the importer's own. ``file`` is
    relative to ``root`` with forward slashes."""
    packages = tuple(packages)
    edges = set()
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            rel = path.relative_to(root).as_posix()
            for module, level in _imported_names(tree):
                if level:  # relative: Python never lets it leave its top-level package
                    continue
                target = module.split(".")[0]
                if target in packages and target != package:
                    edges.add((rel, package, target))
    return edges


def violations(edges: Iterable[tuple[str, str, str]],
               allowed: Mapping[str, frozenset[str]]) -> set[tuple[str, str]]:
    """``(file, imported package)`` of every import that ``allowed`` does not permit."""
    return {(file, dst) for file, src, dst in edges if dst not in allowed.get(src, frozenset())}


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle ``[a, b, ..., a]`` in a directed graph of packages, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def _graph(edges: Iterable[tuple[str, str, str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for _, src, dst in edges:
        graph.setdefault(src, set()).add(dst)
    return graph


@pytest.fixture(scope="module")
def edges():
    return package_imports(ROOT, ALLOWED)


def test_packages_import_one_way(edges):
    found = sorted(violations(edges, ALLOWED))
    assert not found, (
        f"imports against the layering (experiments > engine > policies; simulators alone): "
        f"{found}; move what is shared down to the lower package instead")


def test_no_cycles_between_packages(edges):
    cycle = find_cycle(_graph(edges))
    assert cycle is None, f"packages import each other: {' -> '.join(cycle)}"


# ------------------------------------------------------------------ the checker itself


def _tree(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_checker_catches_every_kind_of_import(tmp_path):
    _tree(tmp_path, {
        "policies/__init__.py": "",
        "policies/a.py": "import numpy\nfrom . import b\n",
        "policies/b.py": "def f():\n    from engine.errors import ValidationError\n",
        "simulators/__init__.py": "import experiments.loop as loop\n",
        "simulators/c.py": "import importlib\nm = importlib.import_module('engine.x')\n",
        "engine/__init__.py": "from policies import a\n",
        "engine/d.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                        "    from experiments import metrics\n"),
        "engine/sub/e.py": "from .. import d\nfrom ..d import metrics\n",
        "experiments/__init__.py": "from engine import d\nfrom simulators import c\n",
    })
    edges = package_imports(tmp_path, ALLOWED)
    assert violations(edges, ALLOWED) == {
        ("policies/b.py", "engine"),
        ("simulators/__init__.py", "experiments"),
        ("simulators/c.py", "engine"),
        ("engine/d.py", "experiments"),
    }
    assert ("engine/__init__.py", "engine", "policies") in edges  # allowed, but recorded
    assert not any(file == "engine/sub/e.py" for file, _, _ in edges)  # relative: inside


def test_checker_finds_cycles_and_allows_the_layering(tmp_path):
    assert find_cycle({"engine": {"policies"}, "experiments": {"engine", "simulators"}}) is None
    assert find_cycle({"engine": {"experiments"}, "experiments": {"engine"}}) == [
        "engine", "experiments", "engine"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    _tree(tmp_path, {
        "engine/x.py": "from experiments import y\n",
        "experiments/y.py": "import engine.x\n",
    })
    edges = package_imports(tmp_path, ALLOWED)
    assert find_cycle(_graph(edges)) == ["engine", "experiments", "engine"]
    assert violations(edges, ALLOWED) == {("engine/x.py", "experiments")}
