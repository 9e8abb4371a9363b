"""Shared fixtures of the circuit tests: one torch thread per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """``run_cli(*args)`` runs ``spectrascope ARGS`` in-process through the real entry point and
    returns (exit code, stdout, stderr)."""
    import sys

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
