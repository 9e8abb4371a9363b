"""The :class:`Corpus` container: texts plus optional per-text labels and provenance."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from spectrascope.errors import CorpusError

#: Characters per token assumed by :meth:`Corpus.approx_tokens` (a usual rule of thumb for
#: English with sub-word tokenizers; code and numbers give somewhat more tokens).
CHARS_PER_TOKEN = 4

#: The ``license`` recorded for user corpora.
USER_LICENSE = "unknown (user data)"


@dataclass
class Corpus:
    """A named list of texts, with optional labels and where the texts come from.

    Attributes:
        name: short name (a built-in corpus name, or the file/directory stem of a user corpus).
        texts: the documents or statements, one model input each; never empty, and every
            text contains non-whitespace characters.
        labels: ``None`` or a DataFrame with exactly one row per text (same order, index
            ``0..len(texts)-1``): e.g. ``month``/``weekday`` for ``calendar``, ``operation``/
            ``has_carry`` for ``arithmetic``, the source module for ``code``, extra fields
            of a user's JSONL/Parquet/dataset rows.
        source: where the texts come from (a description, a file path).
        license: the license the texts are under (``"unknown"`` for user data).
    """

    name: str
    texts: list[str]
    labels: pd.DataFrame | None
    source: str
    license: str

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise ValueError(f"corpus {self.name!r}: {len(self.labels)} label rows for {len(self.texts)} texts")

    def __len__(self) -> int:
        """Number of texts."""
        return len(self.texts)

    def head(self, n: int | None) -> Corpus:
        """Return a new Corpus with the first ``n`` texts (and label rows); all if ``n`` is None."""
        if n is None or n >= len(self.texts):
            return self
        labels = None if self.labels is None else self.labels.iloc[:n].reset_index(drop=True)
        return Corpus(self.name, self.texts[:n], labels, self.source, self.license)

    def approx_tokens(self) -> int:
        """Approximate token count: total characters / :data:`CHARS_PER_TOKEN` (an int)."""
        return sum(len(t) for t in self.texts) // CHARS_PER_TOKEN


def finish_corpus(
    name: str,
    texts: list[str],
    labels: pd.DataFrame | None,
    source: str,
    license: str,
    max_texts: int | None = None,
) -> Corpus:
    """Drop whitespace-only texts, keep the first ``max_texts``, and build the Corpus.

    Returns a :class:`Corpus` with a fresh ``0..n-1`` label index. Raises
    :class:`~spectrascope.errors.CorpusError` if no text with non-whitespace content is left.
    """
    check_max_texts(max_texts)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if not keep:
        raise CorpusError(f"corpus {name!r} ({source}) is empty: it has no non-whitespace text")
    if max_texts is not None:
        keep = keep[:max_texts]
    kept_texts = [texts[i] for i in keep]
    kept_labels = None
    if labels is not None:
        kept_labels = labels.iloc[keep].reset_index(drop=True)
    return Corpus(name, kept_texts, kept_labels, source, license)


def check_max_texts(max_texts: int | None) -> None:
    """Raise CorpusError unless ``max_texts`` is None or a positive integer."""
    if max_texts is None:
        return
    if isinstance(max_texts, bool) or not isinstance(max_texts, int) or max_texts < 1:
        raise CorpusError(f"max_texts must be a positive integer or None, got {max_texts!r}")
