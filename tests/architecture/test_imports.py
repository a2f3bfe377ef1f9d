"""The import contract (contract.toml) holds over the whole source: no cycle of modules or
of packages, and no forbidden edge."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.architecture.imports import ImportGraph, collapse, cycles, import_graph

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("reaper", "llm", "evals", "prompts")
CONTRACT: list[dict[str, Any]] = tomllib.loads(
    (Path(__file__).with_name("contract.toml")).read_text("utf-8")
)["rule"]


def _under(module: str, prefixes: list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(graph: ImportGraph, rule: dict[str, Any]) -> list[str]:
    return sorted(
        f"{src} -> {dst}"
        for src, dsts in graph.items()
        if _under(src, rule["from"]) and not _under(src, rule.get("except_from", []))
        for dst in dsts
        if _under(dst, rule["never"])
        and not _under(dst, rule.get("except_to", []))
        and not _under(dst, [src])  # a package's own submodules
    )


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return import_graph(REPO, SOURCES)


def test_no_module_imports_in_a_circle(graph: ImportGraph) -> None:
    assert cycles(graph) == []


def test_no_package_imports_in_a_circle(graph: ImportGraph) -> None:
    assert cycles(collapse(graph)) == []


@pytest.mark.parametrize("rule", CONTRACT, ids=[r["name"] for r in CONTRACT])
def test_contract(graph: ImportGraph, rule: dict[str, Any]) -> None:
    assert violations(graph, rule) == [], rule["name"]


def test_the_checks_catch_what_they_are_for(graph: ImportGraph) -> None:
    """The checker is not vacuous: a circle and a forbidden edge, added by hand, are found."""
    bent = {k: set(v) for k, v in graph.items()}
    bent["reaper.models"].add("reaper.engine.state")
    assert any("reaper.models" in c for c in cycles(bent))
    bent["reaper.infra.memory"].add("reaper.planners.rules")
    rule = next(r for r in CONTRACT if r["from"] == ["reaper.infra", "reaper.agents"])
    assert violations(bent, rule) == ["reaper.infra.memory -> reaper.planners.rules"]
    # and the graph is real: the engine's known edges are in it
    assert "reaper.engine.state" in graph["reaper.engine.core"]
    assert "reaper.cli.context" in graph["reaper.cli.missions"]
