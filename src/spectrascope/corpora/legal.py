"""The built-in ``legal`` corpus: verbatim texts of standard open-source licenses.

The texts ship inside the package (``corpora/data/licenses/``); ``MANIFEST.csv`` there
records each file's SPDX identifier, upstream address, where the copy came from, and the
terms under which the license text itself is redistributed.
"""

from __future__ import annotations

import csv
import io

import pandas as pd

from spectrascope.corpora.chunking import chunk_paragraphs, round_robin
from spectrascope.corpora.resources import data_file

#: Characters per chunk, at most (about 400 tokens).
MAX_CHARS = 1500

DESCRIPTION = "Legal English: verbatim open-source license texts (GPL, LGPL, Apache, MPL, ...)"
SOURCE = (
    "license texts from Debian base-files /usr/share/common-licenses, shipped in "
    "spectrascope/corpora/data/licenses (per-file sources in MANIFEST.csv)"
)
LICENSE = (
    "verbatim copies of license texts, each redistributable verbatim under its own terms "
    "(see data/licenses/MANIFEST.csv)"
)


def license_manifest() -> pd.DataFrame:
    """Return the manifest of shipped license texts.

    Columns: ``file``, ``spdx_id``, ``title``, ``upstream``, ``obtained_from``,
    ``text_terms`` (all str), one row per license file, in shipping order.
    """
    text = data_file("licenses/MANIFEST.csv").read_text(encoding="utf-8")
    return pd.DataFrame(list(csv.DictReader(io.StringIO(text))))


def build_legal(seed: int = 0) -> tuple[list[str], pd.DataFrame]:
    """Build the ``legal`` corpus (``seed`` is unused: the corpus is fixed).

    Returns ``(texts, labels)``: paragraph chunks interleaved across licenses (round robin),
    and a DataFrame with columns ``license`` (SPDX id) and ``chunk`` (index within it).
    """
    del seed
    per_license = []
    for row in license_manifest().itertuples(index=False):
        text = data_file(f"licenses/{row.file}").read_text(encoding="utf-8")
        per_license.append([(row.spdx_id, k, chunk) for k, chunk in enumerate(chunk_paragraphs(text, MAX_CHARS))])
    rows = round_robin(per_license)
    texts = [r[2] for r in rows]
    labels = pd.DataFrame({"license": [r[0] for r in rows], "chunk": [r[1] for r in rows]})
    return texts, labels
