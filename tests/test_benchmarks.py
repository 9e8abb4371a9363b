"""The benchmark scripts import only names the package has (they are not run by the suite)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py"))


def _spectrascope_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from spectrascope... import name`` in the file, at any depth."""
    tree = ast.parse(path.read_text())
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "spectrascope"
        for alias in node.names
    ]


def test_there_are_benchmarks():
    assert len(BENCHMARKS) >= 3


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_imports_resolve(path: Path):
    missing = []
    for module, name in _spectrascope_imports(path):
        imported = importlib.import_module(module)
        if not hasattr(imported, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{module}.{name}")
    assert not missing, f"{path.name} imports names the package does not have: {missing}"
