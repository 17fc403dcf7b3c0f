"""The import structure: ``amp`` is the method alone, ``baselines`` builds on it only.

Each check runs in a fresh interpreter so that modules imported by other tests do not hide an
import; the import graph of the three packages must have no cycle.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("amp", "baselines", "harness")


def _imported_packages(package: str) -> set[str]:
    """Top-level packages of ours loaded by importing ``package`` and all its submodules."""
    code = f"""
import importlib, json, pkgutil, sys
import {package}
for info in pkgutil.walk_packages({package}.__path__, "{package}."):
    importlib.import_module(info.name)
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & {set(PACKAGES)!r})))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("package", "allowed"),
    [("amp", {"amp"}), ("baselines", {"amp", "baselines"})],
)
def test_a_package_pulls_in_only_what_it_may(package, allowed):
    assert _imported_packages(package) <= allowed


def _module_graph() -> dict[str, set[str]]:
    """Module → modules of ours it imports (top-level and function-level imports alike)."""
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            targets: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    targets.add(node.module)
                    targets.update(f"{node.module}.{alias.name}" for alias in node.names)
                elif isinstance(node, ast.Import):
                    targets.update(alias.name for alias in node.names)
            graph[name] = {t for t in targets if t.split(".")[0] in PACKAGES}
    return {
        name: {t for t in targets if t in graph and t != name} for name, targets in graph.items()
    }


def test_dependency_direction_between_packages():
    edges = {
        (src.split(".")[0], dst.split(".")[0])
        for src, targets in _module_graph().items()
        for dst in targets
    }
    assert edges <= {
        ("amp", "amp"),
        ("baselines", "amp"),
        ("baselines", "baselines"),
        ("harness", "amp"),
        ("harness", "baselines"),
        ("harness", "harness"),
    }


def test_no_import_cycles_between_modules():
    graph = _module_graph()
    # a package imports its own submodules to re-export them: those edges are not cycles
    graph = {
        name: {t for t in targets if not t.startswith(name + ".")}
        for name, targets in graph.items()
    }
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt) :] + [node, nxt] if nxt in path else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*path, node]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if state.get(node) is None and visit(node, []):
            break
    assert not cycle, f"import cycle: {' -> '.join(cycle)}"
