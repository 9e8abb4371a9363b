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


def test_compare_studies_reports_the_gap_of_each_numeric_column():
    """b = a except one value: max |d| 0.5 and median relative gap 0 (two of three rows equal);
    tables whose text columns differ are not compared row by row."""
    import importlib.util

    import pandas as pd

    spec = importlib.util.spec_from_file_location("compare_studies", BENCHMARKS[0].parent / "compare_studies.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    a = pd.DataFrame({"domain": ["x", "y", "z"], "n": [1, 2, 3], "damage": [1.0, 2.0, 4.0]})
    b = a.assign(damage=[1.0, 2.0, 4.5])
    assert compare.same_rows(a, b) and not compare.same_rows(a, b.assign(domain=["x", "y", "w"]))
    (column, gap, median_relative, one_only), (other, *_) = compare.table_difference(a, b)
    assert (column, gap, median_relative, one_only) == ("damage", 0.5, 0.0, 0) and other == "n"
