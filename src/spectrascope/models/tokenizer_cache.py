"""A GGUF file's tokenizer, built once with transformers and saved beside the converted weights.

Building the tokenizer from GGUF metadata takes several seconds (transformers parses the
vocabulary and merges out of the file); the saved ``tokenizer.json`` loads in a fraction of a
second. Files are written into a temporary sub-folder, moved into the cache folder, and a
marker file is written last, so a half-written cache is rebuilt rather than used.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from ..errors import SourceError

TOKENIZER_MARKER = "tokenizer.done"


@contextmanager
def quiet_transformers():
    """No progress bars from transformers inside the block (the previous setting is restored)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def has_cached_tokenizer(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finished tokenizer written by :func:`gguf_tokenizer`."""
    return (Path(folder) / TOKENIZER_MARKER).exists()


def build_gguf_tokenizer(gguf_path: str | Path):
    """The tokenizer stored in a GGUF file (transformers' GGUF tokenizer conversion, offline)."""
    from transformers import AutoTokenizer

    gguf_path = Path(gguf_path)
    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True)
    except Exception as err:  # noqa: BLE001 -- transformers raises ValueError/KeyError/OSError for unsupported files
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SourceError(f"{gguf_path}: cannot build a tokenizer from this GGUF file ({msg})") from None


def gguf_has_tokenizer(gguf_path: str | Path) -> bool:
    """Whether a GGUF file carries a vocabulary (``tokenizer.ggml.tokens``)."""
    import gguf

    try:
        return "tokenizer.ggml.tokens" in gguf.GGUFReader(str(gguf_path)).fields
    except Exception as err:  # noqa: BLE001 -- gguf raises anything on a bad file
        raise SourceError(f"{gguf_path}: corrupt or truncated GGUF file ({err})") from None


def gguf_tokenizer(gguf_path: str | Path, folder: str | Path):
    """The tokenizer of ``gguf_path``, cached in ``folder`` (built and saved on first use), or
    None when the file has no vocabulary.

    Later calls load it from ``folder`` with ``AutoTokenizer.from_pretrained(folder)``; the
    folder is then a complete HF directory (weights, config and tokenizer).
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    if has_cached_tokenizer(folder):
        try:
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception:  # noqa: BLE001 -- a damaged cache: rebuild it below
            (folder / TOKENIZER_MARKER).unlink(missing_ok=True)
    try:
        tokenizer = build_gguf_tokenizer(gguf_path)
    except SourceError:
        # checked only on failure: parsing the metadata again costs seconds on a real model
        if not gguf_has_tokenizer(gguf_path):
            return None
        raise
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".tokenizer-{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        tokenizer.save_pretrained(str(staging))
        files = sorted(p.name for p in staging.iterdir())
        for name in files:
            os.replace(staging / name, folder / name)
        (folder / TOKENIZER_MARKER).write_text(json.dumps({"gguf": str(Path(gguf_path).resolve()), "files": files}))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # the saved copy, so the first load gives exactly what every later load gives
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
