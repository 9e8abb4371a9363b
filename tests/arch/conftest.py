"""Fixtures of the architecture tests: one torch thread (the tensors are tiny; see
tests/mech/conftest.py for the measurement on this machine)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Run each module on one torch thread, restoring the setting after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
