"""Access to the data files shipped under ``spectrascope/corpora/data/``."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def data_file(relative: str) -> Traversable:
    """Return the shipped data file ``corpora/data/<relative>`` (``relative`` uses ``/``).

    The result supports ``read_text(encoding=...)``, whether the package is installed as
    files or zipped.
    """
    node = resources.files("spectrascope.corpora").joinpath("data")
    for part in relative.split("/"):
        node = node.joinpath(part)
    return node
