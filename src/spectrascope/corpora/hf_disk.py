"""Load a dataset written by Hugging Face ``datasets``' ``save_to_disk``.

``datasets`` is not a dependency of spectrascope: it is imported only when the user
passes such a directory, and its absence is reported with the command that installs it.
A saved ``Dataset`` directory holds ``dataset_info.json`` and ``state.json``; a saved
``DatasetDict`` holds ``dataset_dict.json`` and one such directory per split.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from spectrascope.corpora.corpus import USER_LICENSE, Corpus, finish_corpus
from spectrascope.errors import CorpusError

#: Files whose presence marks a directory written by ``save_to_disk``.
MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def is_saved_dataset(path: Path) -> bool:
    """Return whether directory ``path`` was written by ``datasets``' ``save_to_disk``."""
    return any((path / marker).is_file() for marker in MARKERS)


def load_saved_dataset(
    path: Path,
    max_texts: int | None = None,
    *,
    text_field: str = "text",
    split: str | None = None,
) -> Corpus:
    """Load the saved dataset at ``path``; its text is the string column ``text_field``.

    For a ``DatasetDict``, ``split`` names the split; by default ``"train"`` if present,
    else the only split. Returns a :class:`Corpus` named after the directory, whose labels
    are the dataset's other scalar columns (None if it has none).
    """
    try:
        datasets = importlib.import_module("datasets")
    except ImportError:
        raise CorpusError(
            f"{path} is a dataset saved with the Hugging Face datasets library, which is not "
            "installed; install it with: pip install datasets"
        ) from None
    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure here means an unreadable directory
        raise CorpusError(f"cannot read saved dataset {path}: {exc}") from None
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset[_choose_split(path, list(dataset.keys()), split)]

    columns = list(dataset.column_names)
    if text_field not in columns:
        raise CorpusError(
            f"saved dataset {path} has no column {text_field!r} (its columns: {', '.join(columns) or 'none'})",
            option="text_field=",
            hint="name the text column with {option}",
        )
    feature = dataset.features[text_field]
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        raise CorpusError(f"saved dataset {path}: column {text_field!r} holds {feature}, not strings")
    texts = [t or "" for t in dataset[text_field]]
    label_columns = [c for c in columns if c != text_field and isinstance(dataset.features[c], datasets.Value)]
    labels = None
    if label_columns:
        dropped = [c for c in columns if c not in label_columns]
        labels = dataset.remove_columns(dropped).to_pandas()
    return finish_corpus(path.name, texts, labels, str(path), USER_LICENSE, max_texts)


def _choose_split(path: Path, splits: list[str], split: str | None) -> str:
    """Return the split to read from a saved DatasetDict with ``splits``."""
    if split is not None:
        if split not in splits:
            raise CorpusError(f"saved dataset {path} has no split {split!r} (its splits: {', '.join(splits)})")
        return split
    if "train" in splits:
        return "train"
    if len(splits) == 1:
        return splits[0]
    raise CorpusError(
        f"saved dataset {path} has several splits ({', '.join(splits)})",
        option="split=",
        hint="choose one with {option}",
    )
