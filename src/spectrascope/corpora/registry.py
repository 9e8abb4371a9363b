"""The registry of built-in corpora, and the one entry point that loads any corpus.

``load_corpus("calendar")`` builds a built-in corpus; ``load_corpus("my/data.jsonl")``
loads a user corpus (see :mod:`spectrascope.corpora.loaders`). ``corpus_texts`` takes a
comma-separated list of either, as the command line does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spectrascope.corpora import arithmetic, dates, geography, legal, python_docs, stdlib_code
from spectrascope.corpora.corpus import Corpus, check_max_texts, finish_corpus
from spectrascope.corpora.loaders import SUFFIXES, load_path
from spectrascope.errors import CorpusError


@dataclass(frozen=True)
class BuiltinCorpus:
    """One built-in corpus: how to describe it and how to build it.

    ``build(seed)`` returns ``(texts, labels)``; ``source()`` returns the provenance string
    (a function, because it can name the running interpreter).
    """

    name: str
    description: str
    license: str
    source: Callable[[], str]
    build: Callable[[int], tuple[list[str], pd.DataFrame]]


def _const(text: str) -> Callable[[], str]:
    """Return a function that returns ``text``."""
    return lambda: text


#: Built-in corpora by name, in listing order.
BUILTINS: dict[str, BuiltinCorpus] = {
    c.name: c
    for c in (
        BuiltinCorpus("code", stdlib_code.DESCRIPTION, stdlib_code.LICENSE,
                      stdlib_code.source_description, stdlib_code.build_code),
        BuiltinCorpus("python-docs", python_docs.DESCRIPTION, python_docs.LICENSE,
                      python_docs.source_description, python_docs.build_python_docs),
        BuiltinCorpus("legal", legal.DESCRIPTION, legal.LICENSE,
                      _const(legal.SOURCE), legal.build_legal),
        BuiltinCorpus("calendar", dates.DESCRIPTION, dates.LICENSE,
                      _const(dates.SOURCE), dates.build_calendar),
        BuiltinCorpus("arithmetic", arithmetic.DESCRIPTION, arithmetic.LICENSE,
                      _const(arithmetic.SOURCE), arithmetic.build_arithmetic),
        BuiltinCorpus("geography", geography.DESCRIPTION, geography.LICENSE,
                      _const(geography.SOURCE), geography.build_geography),
    )
}  # fmt: skip

DEFAULT_CORPORA = ",".join(BUILTINS)
"""Every built-in domain, comma-separated: the default corpus spec of every verb and the study."""


def list_corpora() -> pd.DataFrame:
    """Return the built-in corpora, one row each.

    Columns: ``name``, ``description``, ``source``, ``license``, ``kind`` (``"builtin"``).
    """
    rows = [
        {"name": c.name, "description": c.description, "source": c.source(),
         "license": c.license, "kind": "builtin"}
        for c in BUILTINS.values()
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["name", "description", "source", "license", "kind"])


def load_corpus(
    name_or_path: str | os.PathLike[str],
    max_texts: int | None = None,
    *,
    seed: int = 0,
    text_field: str = "text",
    split: str | None = None,
) -> Corpus:
    """Load a built-in corpus by name, or a user corpus from a path.

    Args:
        name_or_path: a built-in name (see :func:`list_corpora`) or a path to a ``.txt``,
            ``.jsonl`` or ``.parquet`` file, a directory of ``.txt`` files, or a directory
            written by ``datasets``' ``save_to_disk``. A string that is a built-in name
            means the built-in corpus (write ``./code`` for a path named so); a ``Path``
            is always a path.
        max_texts: keep only the first this many texts (None: all). Built-in corpora made
            of several documents interleave them, so a prefix covers many documents.
        seed: fixes generated corpora (``calendar``, ``arithmetic``, ``geography``).
        text_field: the JSON field / column / dataset column holding the text (user data).
        split: for a saved ``DatasetDict``, the split to read.

    Returns:
        A :class:`Corpus`. Raises :class:`~spectrascope.errors.CorpusError` for an unknown
        name, a missing path, an unreadable file, a missing text field or an empty corpus.
    """
    check_max_texts(max_texts)
    if isinstance(name_or_path, str) and name_or_path in BUILTINS:
        builtin = BUILTINS[name_or_path]
        texts, labels = builtin.build(seed)
        return finish_corpus(builtin.name, texts, labels, builtin.source(), builtin.license, max_texts)
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.exists():
        return load_path(path, max_texts=max_texts, text_field=text_field, split=split)
    if not isinstance(name_or_path, str) or _looks_like_path(name_or_path):
        raise CorpusError(f"corpus path does not exist: {os.fspath(name_or_path)}")
    raise CorpusError(
        f"unknown corpus {os.fspath(name_or_path)!r}: built-in corpora are "
        f"{', '.join(BUILTINS)}; a user corpus is a path to a .txt, .jsonl or .parquet file, "
        "a directory of .txt files, or a directory saved with datasets' save_to_disk"
    )


def corpus_texts(
    spec: str,
    max_texts: int | None = None,
    *,
    seed: int = 0,
    text_field: str = "text",
) -> list[Corpus]:
    """Load every corpus in a comma-separated ``spec`` such as ``"code,calendar,data.jsonl"``.

    Items are stripped of surrounding spaces; empty items are ignored. A ``spec`` that is
    as a whole an existing path is one item even if it contains commas. Other arguments
    are passed to :func:`load_corpus` for each item.

    Returns one :class:`Corpus` per item, in order.
    """
    if spec.strip() and Path(os.path.expanduser(spec.strip())).exists():
        items = [spec.strip()]
    else:
        items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        raise CorpusError(
            f"no corpus given: expected a comma-separated list of built-in names ({', '.join(BUILTINS)}) or paths"
        )
    return [load_corpus(item, max_texts, seed=seed, text_field=text_field) for item in items]


def _looks_like_path(text: str) -> bool:
    """Return whether ``text`` is meant as a path (has a separator or a known suffix)."""
    return "/" in text or os.sep in text or text.startswith((".", "~")) or Path(text).suffix.lower() in SUFFIXES
