"""Fixtures every test folder may use."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

SYNTHETIC_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_synthetic_checkpoint.py"


@pytest.fixture
def run_cli(monkeypatch, capsys) -> Callable[..., tuple[int, str, str]]:
    """``run_cli(*args)`` runs ``spectrascope ARGS`` in-process through the real entry point and
    returns (exit code, stdout, stderr)."""
    from spectrascope.cli import main

    def run(*args) -> tuple[int, str, str]:
        monkeypatch.delenv("SPECTRASCOPE_DEBUG", raising=False)
        monkeypatch.setattr(sys, "argv", ["spectrascope", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as done:
            code = int(done.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def synthetic_checkpoints() -> ModuleType:
    """scripts/make_synthetic_checkpoint.py as a module (``make_checkpoint``, ``write_shard``)."""
    name = "make_synthetic_checkpoint"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SYNTHETIC_SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]
