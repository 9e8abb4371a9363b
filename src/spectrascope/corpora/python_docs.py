"""The built-in ``python-docs`` corpus: Python's reference documentation as plain text.

Read at run time from ``pydoc_data.topics.topics`` (the text ``help()`` shows for keywords
and language topics), which ships with CPython. Topics are taken in sorted order and split
into chunks of whole paragraphs of at most :data:`MAX_CHARS` characters.
"""

from __future__ import annotations

import importlib
import platform

import pandas as pd

from spectrascope.corpora.chunking import chunk_paragraphs, round_robin
from spectrascope.errors import CorpusError

#: Characters per chunk, at most (about 400 tokens).
MAX_CHARS = 1500

DESCRIPTION = "Python reference documentation (pydoc_data topics), in paragraph chunks"
LICENSE = "PSF-2.0 (Python Software Foundation License)"


def source_description() -> str:
    """Return the ``source`` string naming the interpreter whose documentation is used."""
    return f"pydoc_data.topics.topics of Python {platform.python_version()}"


def build_python_docs(seed: int = 0) -> tuple[list[str], pd.DataFrame]:
    """Build the ``python-docs`` corpus (``seed`` is unused: the corpus is fixed).

    Returns ``(texts, labels)``: paragraph chunks interleaved across topics (round robin),
    and a DataFrame with columns ``topic`` (the pydoc topic name, e.g. ``"assert"``) and
    ``chunk`` (0-based index of the chunk within its topic).
    """
    del seed
    try:
        topics: dict[str, str] = importlib.import_module("pydoc_data.topics").topics
    except (ImportError, AttributeError) as exc:
        raise CorpusError(
            "built-in corpus 'python-docs' needs the standard library's pydoc_data.topics, "
            f"which this Python does not have ({exc})"
        ) from None
    per_topic = [
        [(name, k, chunk) for k, chunk in enumerate(chunk_paragraphs(topics[name], MAX_CHARS))]
        for name in sorted(topics)
    ]
    rows = round_robin(per_topic)
    texts = [r[2] for r in rows]
    labels = pd.DataFrame({"topic": [r[0] for r in rows], "chunk": [r[1] for r in rows]})
    return texts, labels
