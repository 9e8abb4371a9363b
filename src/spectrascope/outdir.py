"""The output folder of a run: checked before any work, held by one run at a time, its files
written atomically and the files of a previous run removed, never left beside new ones.

Every verb that writes an output folder (``--out``) and the study runner use it::

    with OutputFolder(out, option="out") as folder:   # checked and locked, or one clear line
        folder.remove(["weights.parquet", ...])        # what a previous run of this verb wrote
        ... compute ...
        folder.write_text("summary.json", text)       # temporary name, renamed when complete

Checks (:func:`check_writable`): the path is not a file, not under a file, and a file can be
created in it; each failure is one :class:`~spectrascope.errors.OutputError` naming the option.
Lock: an exclusive ``flock`` on ``.spectrascope.lock`` in the folder, held until the ``with``
ends (or the process dies); a second run that wants the folder is refused in one line. A
process may enter the same folder again (the study runner holds it while its stages write).
A folder the run created is removed again when the run fails before writing anything in it.
Tables are written with :func:`spectrascope.tables.write_table`, which is atomic the same way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Self

from .errors import OutputError

try:
    import fcntl
except ImportError:  # not POSIX: no lock (the checks still run)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".spectrascope.lock"
_HELD: dict[Path, tuple[int, int]] = {}
"""Folders this process holds: resolved path -> (lock file descriptor, times entered)."""


def check_writable(path: str | Path, option: str = "out") -> Path:
    """Create the folder ``path`` if needed and check that files can be written in it.

    Args:
        option: the API parameter that named the folder (spelled as the CLI's flag there).
    Returns:
        the folder's path.
    Raises:
        OutputError: the path is a file, lies under a file, or cannot be created or written.
    """
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{{option}} {folder} is a file, not a folder", option=option)
    ancestor = folder.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise OutputError(f"{{option}} {folder} lies under {ancestor}, which is a file, not a folder", option=option)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
    except OSError as err:
        raise OutputError(f"{{option}} {folder} is not writable ({err.strerror or err})", option=option) from None
    os.close(fd)
    os.unlink(probe)
    return folder


class OutputFolder:
    """A checked, exclusively held output folder (a context manager; see the module docstring).

    Args:
        path: the folder (created if needed).
        option: the API parameter that named it, for messages (``"out"``, ``"out_dir"``).
    """

    def __init__(self, path: str | Path, option: str = "out"):
        self.path = Path(path).expanduser()
        self.option = option
        self._created: list[Path] = []

    def __enter__(self) -> Self:
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        check_writable(self.path, self.option)
        self._created = missing
        key = self.path.resolve()
        if key in _HELD:
            fd, count = _HELD[key]
            _HELD[key] = (fd, count + 1)
        else:
            _HELD[key] = (self._lock(), 1)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        key = self.path.resolve()
        fd, count = _HELD[key]
        if count > 1:
            _HELD[key] = (fd, count - 1)
            return
        del _HELD[key]
        os.close(fd)  # releases the lock
        if exc_type is not None and self._created:
            self._remove_created()

    def _remove_created(self) -> None:
        """Remove the lock file, and the folders this run created where nothing else was written."""
        (self.path / LOCK_NAME).unlink(missing_ok=True)
        for folder in self._created:  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty: something was written, keep it
                return

    def _lock(self) -> int:
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(
                f"{{option}} {self.path} is in use by another spectrascope run (pid {holder}); wait "
                "for it to end or write to another folder",
                option=self.option,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def remove(self, names: Iterable[str]) -> None:
        """Delete these files of the folder where they exist (what an earlier run left)."""
        for name in names:
            (self.path / name).unlink(missing_ok=True)

    def write_text(self, name: str, text: str) -> Path:
        """Write ``name`` under a temporary name and rename it when complete."""
        return write_text_atomic(self.path / name, text)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, renamed when complete."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)
    return path
