"""The built-in ``code`` corpus: Python source of a fixed set of standard-library modules.

The source is read at run time from the running interpreter's standard library
(``sysconfig.get_paths()["stdlib"]``), so nothing is shipped or downloaded; the exact text
follows the Python version. The module list is fixed and sorted, so for one interpreter
the corpus is always the same.
"""

from __future__ import annotations

import platform
import sysconfig
from pathlib import Path

import pandas as pd

from spectrascope.corpora.chunking import chunk_source, round_robin
from spectrascope.errors import CorpusError

#: Standard-library modules (``<stdlib>/<name>.py``) whose source makes up the corpus:
#: pure-Python modules present in every CPython since 3.9, of varied style
#: (algorithms, text processing, numerics, context managers, docstrings).
MODULES: tuple[str, ...] = (
    "bisect",
    "colorsys",
    "contextlib",
    "fnmatch",
    "fractions",
    "graphlib",
    "heapq",
    "shlex",
    "statistics",
    "string",
    "textwrap",
)

#: Lines per chunk (at most); chunks end at function/class boundaries where possible.
MAX_LINES = 40

DESCRIPTION = "Python source code of standard-library modules, in chunks of up to 40 lines"
LICENSE = "PSF-2.0 (Python Software Foundation License)"


def stdlib_dir() -> Path:
    """Return the running interpreter's standard-library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def source_description() -> str:
    """Return the ``source`` string: interpreter version, stdlib directory and module list."""
    return f"Python {platform.python_version()} standard library at {stdlib_dir()}: " + ", ".join(
        f"{m}.py" for m in MODULES
    )


def build_code(seed: int = 0) -> tuple[list[str], pd.DataFrame]:
    """Build the ``code`` corpus (``seed`` is unused: the corpus is fixed).

    Returns ``(texts, labels)``: source chunks interleaved across modules (round robin), and
    a DataFrame with columns ``module`` (str), ``first_line``, ``last_line`` (1-based,
    inclusive line numbers in that module's file).
    """
    del seed
    root = stdlib_dir()
    per_module: list[list[tuple[str, int, int, str]]] = []
    for module in MODULES:
        path = root / f"{module}.py"
        if not path.is_file():
            continue
        source = path.read_text(encoding="utf-8")
        per_module.append([(module, first, last, text) for first, last, text in chunk_source(source, MAX_LINES)])
    if not per_module:
        raise CorpusError(
            f"built-in corpus 'code' needs the Python standard library's source files, "
            f"but none of {', '.join(MODULES)} was found in {root}"
        )
    rows = round_robin(per_module)
    texts = [r[3] for r in rows]
    labels = pd.DataFrame(
        {
            "module": [r[0] for r in rows],
            "first_line": [r[1] for r in rows],
            "last_line": [r[2] for r in rows],
        }
    )
    return texts, labels
