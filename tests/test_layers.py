"""The executor's modules import downward only: no module imports one that imports it back, at module
level or inside a function (a cycle hides which module owns a concept)."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(APP).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every executor module ``path`` imports, anywhere in the file (``from executor import x`` names x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module != "executor":  # `from executor import scan` imports scan, not the package's code
                found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules} - {module_name(path)}


def graph() -> dict[str, set[str]]:
    files = sorted(APP.joinpath("executor").rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, modules) for f in files}


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join(path + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_the_layers_of_the_candidate_pass():
    """inputs -> engine -> scan -> the task modules; mining depends on the engine alone (and on nothing above it)."""
    edges = graph()
    assert "executor.inputs" in edges["executor.engine"]
    assert not {"executor.engine", "executor.scan", "executor.mining"} & edges["executor.inputs"]
    assert "executor.engine" in edges["executor.scan"]
    assert {"executor.scan", "executor.engine"} >= edges["executor.infer"] - {"executor.protocol"}
    assert not {"executor.infer", "executor.mine", "executor.scan"} & edges["executor.engine"]
    for module, imported in edges.items():
        if module.startswith("executor.mining"):
            assert not {"executor.infer", "executor.mine", "executor.scan", "executor.train"} & imported, module
