"""Fixtures shared by every test folder."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest


@pytest.fixture
def run_cli(monkeypatch, capsys) -> Callable[..., tuple[int, str, str]]:
    """``run_cli(*args)`` runs ``spectrascope ARGS`` in-process through the real entry point and
    returns (exit code, stdout, stderr)."""
    from spectrascope.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.delenv("SPECTRASCOPE_DEBUG", raising=False)
        monkeypatch.setattr(sys, "argv", ["spectrascope", *args])
        code = 0
        try:
            main()
        except SystemExit as done:
            code = int(done.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
