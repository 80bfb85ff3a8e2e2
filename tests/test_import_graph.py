"""No import circles between the modules of facefeat and facefeat_builtins.

The graph is read from the source with :mod:`ast` (nothing is imported): an edge A -> B for
every ``import B`` / ``from B import x`` in A, at module level *and* inside functions, because
a function-level import that closes a circle still ties the two modules together (the e4e and
stylegan2 plugins used to trade header readers that way). ``from pkg import name`` counts as an
edge to ``pkg.name`` when that is a module, else to ``pkg``. Package ``__init__`` modules that
re-export their submodules are part of the graph too, but an edge from a module to its own
parent package (``from facefeat.models import x`` inside ``facefeat.models.y``) is the usual
re-export pattern and is not counted as a circle through the parent.

Run ``python tests/test_import_graph.py`` to print the graph's size and every circle found.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"facefeat": ROOT / "facefeat", "facefeat_builtins": ROOT / "plugins" / "facefeat_builtins"}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Edges ``module -> imported modules`` within facefeat and facefeat_builtins."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import: resolve against this module's package
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
            for t in targets:
                while t and t not in modules:  # import a.b.c of a non-module attribute -> a.b
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):  # own parent package: re-export
                    graph[name].add(t)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_graph_sees_known_edges():
    graph = import_graph()
    # a module-level import, a function-level import and a relative one are all edges
    assert "facefeat.io.tables" in graph["facefeat.engine.run"]
    assert "facefeat.models.headers" in graph["facefeat_builtins.e4e"]
    assert "facefeat.face.landmarks" in graph["facefeat.engine.preprocess"]


def test_find_cycles_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


if __name__ == "__main__":
    g = import_graph()
    cycles = find_cycles(g)
    print(f"{len(g)} modules, {sum(len(v) for v in g.values())} import edges (module and function level)")
    for c in cycles:
        print("circle:", " <-> ".join(c))
    print(f"{len(cycles)} circles")
