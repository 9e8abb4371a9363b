"""Shared fixtures of the weight-spectra tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SYNTHETIC_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_synthetic_checkpoint.py"


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
