"""What a study's results depend on, so a rerun never mixes results of different inputs.

A stage's fingerprint holds the package version, the model source (every weight file's
name, size and modification time, or the object's identity for an in-memory model), the
seed, the device, the corpora's texts (a hash of each item's) and every budget.
``--resume`` reuses a finished stage only when its recorded fingerprint equals the current
one; otherwise it says what differs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import __version__
from ..fingerprint import differences, model_identity
from .budget import StudyBudget

__all__ = ["canonical", "corpus_identity", "differences", "stage_fingerprint", "study_identity"]


def corpus_identity(corpora: str, seed: int) -> dict[str, str]:
    """Each corpus item's name -> the first 16 hex digits of the SHA-256 of its texts.

    The names alone do not identify the texts: the built-in ``code`` and ``python-docs``
    corpora are read from the running interpreter's standard library (another Python version,
    other texts), and a folder or file can be edited between two runs. Loads every item
    (an unknown one raises its :class:`~spectrascope.errors.CorpusError` here, before any work).
    """
    from ..corpora import corpus_texts

    return {
        c.name: hashlib.sha256("\x00".join(c.texts).encode()).hexdigest()[:16] for c in corpus_texts(corpora, seed=seed)
    }


def study_identity(model: str | Path, seed: int, budget: StudyBudget, device: str = "cpu") -> dict:
    """What every stage's results depend on. ``device`` is part of it: float32 sums on a GPU
    differ from the CPU's in the last digits, so a resume never mixes the two."""
    from .context import STUDY_ATTENTION  # context imports this module

    return {
        "version": __version__,
        "model": model_identity(model),
        "seed": int(seed),
        "device": str(device),
        "attention": str(STUDY_ATTENTION or "default"),
        "corpora": corpus_identity(budget.corpora, seed),
        "budget": budget.to_dict(),
    }


def stage_fingerprint(stage: str, identity: dict) -> dict:
    """The fingerprint of one stage's results: its name and the study's :func:`study_identity`."""
    return {"stage": stage, **identity}


def canonical(fingerprint: dict) -> str:
    return json.dumps(fingerprint, sort_keys=True)
