"""spectrascope: weight spectra, activation spectra and mechanisms of LLMs in one report."""

from __future__ import annotations

__version__ = "0.1.0"

