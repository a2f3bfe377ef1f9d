"""The import graph of Reaper's source, read with `ast` (nothing is imported to build it).

Every import counts: top-level, inside functions (a lazy import still ties two modules) and
under `TYPE_CHECKING` (a type-only circle is still a circle a reader must untangle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["ImportGraph", "cycles", "import_graph", "package_of"]

ImportGraph = dict[str, set[str]]


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _known(name: str, modules: set[str]) -> str | None:
    """The longest module of ours that `name` is or lies in (`reaper.models.Task` ->
    `reaper.models`), or None for a third-party or standard-library name."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(root: Path, packages: Iterable[str]) -> ImportGraph:
    files = {
        _module_name(root, p): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))
    }
    modules = set(files)
    graph: ImportGraph = {m: set() for m in modules}
    for module, path in files.items():
        tree = ast.parse(path.read_text("utf-8"), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                # `from pkg import mod` names a module; `from mod import name` a name in it.
                targets = [f"{base}.{a.name}" for a in node.names] or [base]
            for target in targets:
                found = _known(target, modules)
                if found is not None and found != module:
                    graph[module].add(found)
    return graph


def package_of(module: str, depth: int = 2) -> str:
    """`reaper.engine.state` -> `reaper.engine`; top-level modules are their own package."""
    return ".".join(module.split(".")[:depth])


def collapse(graph: Mapping[str, set[str]], depth: int = 2) -> ImportGraph:
    packages: ImportGraph = {}
    for src, dsts in graph.items():
        edges = packages.setdefault(package_of(src, depth), set())
        edges.update(package_of(d, depth) for d in dsts)
    for src, edges in packages.items():
        edges.discard(src)
    return packages


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found
