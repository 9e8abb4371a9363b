"""Load a user's own corpus from a path.

Accepted inputs (the format is chosen by suffix, or for directories by their content):

- ``.txt`` (UTF-8): if the file has blank lines between its non-blank lines, each
  blank-line-separated paragraph is one document (its line breaks kept); otherwise each
  non-blank line is one document. Surrounding whitespace is stripped.
- a directory of ``.txt`` files: every ``*.txt`` under it, recursively, in sorted path
  order, each split as above; labels: ``file`` (path relative to the directory).
- ``.jsonl`` / ``.ndjson``: one JSON object per non-blank line; the text is the field
  ``text_field`` (default ``"text"``); other scalar fields become labels.
- ``.parquet``: the text is the string column ``text_field``; other flat columns become labels.
- a directory written by Hugging Face ``datasets``' ``save_to_disk`` (recognised by its
  ``dataset_info.json``, ``state.json`` or ``dataset_dict.json``): see
  :mod:`spectrascope.corpora.hf_disk`.

Texts that are missing (JSON ``null``, Parquet null) or whitespace-only are dropped, with
their label rows; a corpus with no text left is an error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from spectrascope.corpora.chunking import split_paragraphs
from spectrascope.corpora.corpus import USER_LICENSE, Corpus, finish_corpus
from spectrascope.corpora.hf_disk import is_saved_dataset, load_saved_dataset
from spectrascope.errors import CorpusError

#: File suffixes this module reads (lower case).
SUFFIXES = (".txt", ".jsonl", ".ndjson", ".parquet")


def load_path(
    path: str | Path,
    max_texts: int | None = None,
    *,
    text_field: str = "text",
    split: str | None = None,
) -> Corpus:
    """Load a user corpus from ``path`` (see the module docstring for the formats).

    Returns a :class:`Corpus` named after the file stem / directory name, with
    ``source`` = the path and ``license`` = :data:`USER_LICENSE`. Raises
    :class:`~spectrascope.errors.CorpusError` with one clear message on any problem.
    """
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"corpus path does not exist: {path}")
    if path.is_dir():
        if is_saved_dataset(path):
            return load_saved_dataset(path, max_texts, text_field=text_field, split=split)
        texts, labels = read_text_dir(path)
        return finish_corpus(path.name, texts, labels, str(path), USER_LICENSE, max_texts)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        texts, labels = split_documents(read_text(path)), None
    elif suffix in (".jsonl", ".ndjson"):
        texts, labels = read_jsonl(path, text_field)
    elif suffix == ".parquet":
        texts, labels = read_parquet(path, text_field)
    else:
        raise CorpusError(
            f"cannot read {path}: unsupported file type {suffix or '(no suffix)'!r}; expected "
            f"{', '.join(SUFFIXES)}, a directory of .txt files, or a saved datasets directory"
        )
    return finish_corpus(path.stem, texts, labels, str(path), USER_LICENSE, max_texts)


def read_text(path: Path) -> str:
    """Return the content of a UTF-8 text file (a leading byte-order mark is dropped)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"cannot read {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise CorpusError(f"cannot read {path}: {exc.strerror or exc}") from None


def split_documents(text: str) -> list[str]:
    """Split a text file's content into documents.

    Returns the blank-line-separated paragraphs if there are at least two, else the
    non-blank lines; each stripped.
    """
    paragraphs = split_paragraphs(text)
    if len(paragraphs) > 1:
        return paragraphs
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_text_dir(path: Path) -> tuple[list[str], pd.DataFrame]:
    """Read every ``*.txt`` file under directory ``path`` (recursively, sorted).

    Returns ``(texts, labels)`` with one label column ``file`` (POSIX path relative to
    ``path``).
    """
    files = sorted(
        (p for p in path.rglob("*.txt") if p.is_file()),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    if not files:
        raise CorpusError(
            f"directory {path} has no .txt files (and is not a dataset saved with datasets' save_to_disk)"
        )
    texts: list[str] = []
    names: list[str] = []
    for file in files:
        documents = split_documents(read_text(file))
        texts.extend(documents)
        names.extend([file.relative_to(path).as_posix()] * len(documents))
    return texts, pd.DataFrame({"file": names})


def read_jsonl(path: Path, text_field: str) -> tuple[list[str], pd.DataFrame | None]:
    """Read a JSON Lines file; the text of each object is its field ``text_field``.

    Returns ``(texts, labels)``: ``labels`` holds the other fields whose values are all
    scalars (str, number, bool, null), or is None if there are none.
    """
    records: list[dict] = []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path} line {lineno} is not valid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(record, dict):
            raise CorpusError(
                f"{path} line {lineno} is a JSON {type(record).__name__}, expected an object "
                f'like {{"{text_field}": "..."}}'
            )
        if text_field not in record:
            raise CorpusError(
                f"{path} line {lineno} has no field {text_field!r} (its fields: "
                f"{', '.join(map(str, record)) or 'none'})",
                option="text_field=",
                hint="name the text field with {option}",
            )
        value = record[text_field]
        if value is not None and not isinstance(value, str):
            raise CorpusError(
                f"{path} line {lineno}: field {text_field!r} holds a {type(value).__name__}, not a string"
            )
        records.append(record)
    if not records:
        raise CorpusError(f"corpus {path.stem!r} ({path}) is empty: it has no JSON lines")
    texts = [r[text_field] or "" for r in records]
    frame = pd.DataFrame.from_records([{k: v for k, v in r.items() if k != text_field} for r in records])
    scalar = [
        c for c in frame.columns
        if frame[c].map(lambda v: v is None or isinstance(v, (str, int, float, bool))).all()
    ]  # fmt: skip
    return texts, (frame[scalar] if scalar else None)


def read_parquet(path: Path, text_field: str) -> tuple[list[str], pd.DataFrame | None]:
    """Read a Parquet file; the text is the string column ``text_field``.

    Returns ``(texts, labels)``: ``labels`` holds the other columns of flat (not nested,
    not binary) types, or is None if there are none.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise CorpusError(f"cannot read {path}: not a readable Parquet file ({exc})") from None
    if text_field not in table.column_names:
        raise CorpusError(
            f"{path} has no column {text_field!r} (its columns: {', '.join(table.column_names) or 'none'})",
            option="text_field=",
            hint="name the text column with {option}",
        )
    column_type = table.schema.field(text_field).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type) or pa.types.is_null(column_type)):
        raise CorpusError(f"{path}: column {text_field!r} holds {column_type}, not strings")
    texts = [t or "" for t in table.column(text_field).to_pylist()]
    flat = [
        f.name for f in table.schema
        if f.name != text_field
        and not pa.types.is_nested(f.type)
        and not pa.types.is_binary(f.type)
        and not pa.types.is_large_binary(f.type)
    ]  # fmt: skip
    labels = table.select(flat).to_pandas() if flat else None
    return texts, labels
