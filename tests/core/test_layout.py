"""The package's layout rules, read from the code's own imports (function-level ones too):
no import cycle, a task never imports another task, the CLI uses only a task's public face,
the shared parts never import a task, and no module grows past one job's size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "rankpref"
TASKS = ("next_item", "rank", "sesa")
MAX_LINES = 450
ONE_JOB = {"data/readers.py", "serving/index.py", "data/rated.py"}  # one job each, long


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """module -> the rankpref modules it imports anywhere in its body."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def test_the_layout_rules_are_read_from_the_real_package():
    graph = _graph()
    assert "rankpref.tasks.next_item.fit" in graph and "rankpref.registry" in graph
    assert "rankpref.tasks.next_item.module" in graph["rankpref.tasks.next_item.fit"]


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def _task_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "tasks" else None


def test_a_task_never_imports_another_task():
    bad = [(m, t) for m, edges in _graph().items() for t in edges
           if _task_of(m) and _task_of(t) and _task_of(m) != _task_of(t)]
    assert not bad, bad


def test_the_cli_talks_to_task_packages_not_their_internals():
    bad = [(m, t) for m, edges in _graph().items() if m.startswith("rankpref.cli")
           for t in edges if _task_of(t) and t != f"rankpref.tasks.{_task_of(t)}"]
    assert not bad, bad


def test_shared_parts_never_import_a_task_or_what_sits_above_them():
    above = ("rankpref.tasks", "rankpref.cli", "rankpref.tuning", "rankpref.serving",
             "rankpref.load")
    shared = ("rankpref.config", "rankpref.artifact", "rankpref.lightning", "rankpref.registry",
              "rankpref.data", "rankpref.models", "rankpref.losses", "rankpref.metrics",
              "rankpref.rationales", "rankpref.text", "rankpref.plots", "rankpref.io",
              "rankpref.settings", "rankpref.errors", "rankpref.run_logs")
    bad = [(m, t) for m, edges in _graph().items() if m.startswith(shared)
           for t in edges if t == "rankpref.tasks" or t.startswith(above)]
    assert not bad, bad


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    rel = str(path.relative_to(PACKAGE))
    if rel not in ONE_JOB:
        assert len(path.read_text("utf-8").splitlines()) <= MAX_LINES, rel
