"""The import graph: data flows one way, and nothing imports in a circle.

Every ``import`` in the package counts, those inside functions too (a lazy import is still a
dependency). Layers, lowest first: the definitions of the appraisers never import the MPC layer
that runs them, and no module below the widgets imports explorer.app.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "explorer").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (``from a import b`` counts a.b when b is a
    module, and a itself)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_in_a_circle():
    assert cycles(import_graph()) == []


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# (lower, higher): no module of the lower package imports one of the higher
FORBIDDEN = [
    ("explorer.appraisers", "explorer.mpc"),
    ("explorer.appraisers", "explorer.config"),
    ("explorer.appraisers", "explorer.experiments"),
    ("explorer.mpc", "explorer.config"),
    ("explorer.mpc", "explorer.experiments"),
    ("explorer.experiments", "explorer.jobs"),
    ("explorer.plots", "explorer.jobs"),
]


@pytest.mark.parametrize(("lower", "higher"), FORBIDDEN)
def test_lower_layers_never_import_higher_ones(lower, higher):
    graph = import_graph()
    bad = sorted(f"{m} -> {t}" for m, targets in graph.items()
                 if _within(m, lower) for t in targets if _within(t, higher))
    assert bad == []


def test_only_the_widgets_import_the_widgets():
    graph = import_graph()
    bad = sorted(f"{m} -> {t}" for m, targets in graph.items()
                 if not _within(m, "explorer.app")
                 for t in targets if _within(t, "explorer.app"))
    assert bad == []
