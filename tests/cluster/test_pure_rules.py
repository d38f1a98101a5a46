"""The cluster's rule modules are pure by construction: what they import can neither read
a clock nor do I/O, so time and the stream's contents can only be passed in."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType

import pytest

from server.cluster import membership, recovery, replay

MODEL = {"server.model.changes", "server.model.presence", "server.model.records"}
PURE = {"__future__", "collections.abc", "dataclasses", "enum", "typing", "orjson", *MODEL}


def _imports(module: ModuleType) -> set[str]:
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    return {
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }


@pytest.mark.parametrize("module", [membership, replay, recovery], ids=lambda m: m.__name__)
def test_a_rule_module_reads_no_clock_and_does_no_io(module: ModuleType) -> None:
    assert _imports(module) <= PURE
