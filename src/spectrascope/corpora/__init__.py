"""Built-in domain corpora and loaders for the user's own text.

Public API:

- :class:`Corpus`: ``name``, ``texts``, ``labels`` (DataFrame or None), ``source``, ``license``;
- :func:`list_corpora`: the built-in corpora as a DataFrame;
- :func:`load_corpus`: a built-in corpus by name, or a user corpus by path;
- :func:`corpus_texts`: several corpora from a comma-separated spec;
- :func:`load_path`: a user corpus from a path (``.txt``, ``.jsonl``, ``.parquet``, a
  directory of ``.txt`` files, a ``datasets`` ``save_to_disk`` directory).

Built-in corpora: ``code`` (standard-library source), ``python-docs`` (pydoc topics),
``legal`` (license texts), ``calendar``, ``arithmetic``, ``geography`` (generated facts
with labels). Each holds at least 20,000 tokens; nothing is downloaded.
"""

from __future__ import annotations

from spectrascope.corpora.corpus import Corpus
from spectrascope.corpora.loaders import load_path
from spectrascope.corpora.registry import BUILTINS, DEFAULT_CORPORA, corpus_texts, list_corpora, load_corpus

__all__ = ["BUILTINS", "DEFAULT_CORPORA", "Corpus", "corpus_texts", "list_corpora", "load_corpus", "load_path"]
