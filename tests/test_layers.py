"""The server's layers as the import graph shows them (design.md §2).

ruff's per-folder bans say what each layer must not import; this test reads every import
of every module (inside functions too, where the bans cannot look at intent) and checks
the whole graph: no circle between modules, no arrow from a lower layer to a higher one,
no two modules with the same name.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

SERVER = Path(__file__).resolve().parent.parent / "server"

LAYERS = ("model", "stores", "protocol", "cluster", "io")
"""Bottom to top: a module may import its own layer and the ones before it."""


def _module(path: Path) -> str:
    parts = path.relative_to(SERVER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module(path): path for path in SERVER.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                targets.update(
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                )
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def test_every_server_module_lives_in_a_layer() -> None:
    loose = [m for m in _graph() if m != "server" and m.split(".")[1] not in LAYERS]
    assert loose == []


def test_no_import_runs_up_a_layer() -> None:
    upward = [
        f"{source} -> {target}"
        for source, targets in _graph().items()
        for target in targets
        if source != "server" and _layer(source) < _layer(target)
    ]
    assert upward == []


def test_no_import_circles() -> None:
    graph = _graph()
    state: dict[str, str] = {}
    circles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_module_names_are_unique() -> None:
    names = Counter(path.stem for path in SERVER.rglob("*.py") if path.stem != "__init__")
    assert [name for name, count in names.items() if count > 1] == []


def test_the_graph_is_read() -> None:
    """The checks above would pass on an empty graph: this one pins a few known arrows."""
    graph = _graph()
    assert "server.model.presence" in graph["server.protocol.hub"]
    assert "server.protocol.hub" in graph["server.io.app"]
    assert "server.protocol.log_seam" in graph["server.cluster.jetstream_log"]
