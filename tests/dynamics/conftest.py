"""Fixtures of the dynamics tests: one torch thread, the training series, the CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from series_builders import write_training_series


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models: a second torch thread only contends on the shared 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory) -> Path:
    """The training series (see :func:`write_training_series`)."""
    return write_training_series(tmp_path_factory.mktemp("series"))
