"""The flat API: every exported name resolves, and type checkers see exactly the same names."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import spectrascope


def _type_checking_imports() -> dict[str, str]:
    """name -> module of the ``if TYPE_CHECKING:`` imports of spectrascope/__init__.py."""
    tree = ast.parse(Path(spectrascope.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    out = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names:
            assert alias.asname == alias.name  # ``X as X``: an explicit re-export
            out[alias.name] = f"spectrascope.{node.module}"
    return out


def test_every_export_resolves_to_its_module():
    for name, module in spectrascope._EXPORTS.items():
        assert getattr(spectrascope, name) is getattr(importlib.import_module(module), name)
    assert spectrascope.__all__ == sorted(spectrascope._EXPORTS)


def test_type_checkers_see_the_same_names_as_the_runtime():
    assert _type_checking_imports() == spectrascope._EXPORTS


def test_an_unknown_name_is_an_attribute_error():
    try:
        _ = spectrascope.no_such_verb
    except AttributeError as err:
        assert "no_such_verb" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_the_type_checker_covers_every_exported_module():
    """pyproject's [tool.mypy] files name the module of every export (or a package holding it)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    files = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    checked = [root / f for f in files]
    for module in sorted(set(spectrascope._EXPORTS.values()) | {"spectrascope"}):
        stem = root / "src" / Path(*module.split("."))
        path = stem / "__init__.py" if stem.is_dir() else stem.with_suffix(".py")
        assert path.is_file(), path
        assert any(path == c or c in path.parents for c in checked), f"{module} is not type checked"
