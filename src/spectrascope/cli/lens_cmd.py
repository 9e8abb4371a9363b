"""Mechanistic verbs (see spectrascope.mech); commands register on the shared app."""

from __future__ import annotations

from . import app, console  # noqa: F401
