"""Content digests of tensors: a tensor whose digest did not change between two checkpoints
has the same spectrum, so tracking copies its rows instead of recomputing them.

The digest is BLAKE2b (16 bytes, hex) over the storage dtype, the shape and the stored bytes.
For safetensors files the stored bytes are hashed straight from the file in 16 MiB reads
(nothing converted, memory bounded); for other sources (GGUF, in-memory) the float32 tensor
the source loads is hashed. A tensor that cannot be read has no digest (None): it is never
reused, and the engine reports the failure in its row.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np

_READ_BYTES = 16 * 2**20


def safetensors_entries(path: str | Path) -> dict[str, tuple[int, int, str, tuple[int, ...]]]:
    """name -> (byte offset of the data in the file, byte length, dtype, shape) of one safetensors file."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    entries = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, stop = meta["data_offsets"]
        entries[name] = (8 + size + start, stop - start, meta["dtype"], tuple(meta["shape"]))
    return entries


def _hash_file_range(path: str | Path, offset: int, length: int, head: bytes) -> str | None:
    digest = hashlib.blake2b(head, digest_size=16)
    with open(path, "rb") as fh:
        fh.seek(offset)
        left = length
        while left > 0:
            chunk = fh.read(min(_READ_BYTES, left))
            if not chunk:
                return None  # truncated file
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


class TensorDigests:
    """Digests of one source's tensors (see the module docstring).

    Args:
        source: an opened tensor source (``spectrascope.open_source``).
    """

    def __init__(self, source):
        self.source = source
        self._entries: dict[str, tuple[str, tuple[int, int, str, tuple[int, ...]]]] = {}
        spec = source.spec() if hasattr(source, "spec") else None
        if spec is not None and spec.kind == "safetensors":
            for path in spec.paths:
                try:
                    self._entries.update({n: (path, e) for n, e in safetensors_entries(path).items()})
                except (OSError, ValueError, KeyError, struct.error):
                    continue  # unreadable header: those tensors fall back on load()

    def digest(self, name: str) -> str | None:
        """The tensor's digest, or None when it cannot be read."""
        if name in self._entries:
            path, (offset, length, dtype, shape) = self._entries[name]
            try:
                return _hash_file_range(path, offset, length, f"{dtype}{shape}".encode())
            except OSError:
                return None
        try:
            array = np.ascontiguousarray(self.source.load(name))
        except Exception:  # noqa: BLE001 - any source's load failure means no digest; the engine reports it in the row
            return None
        digest = hashlib.blake2b(f"{array.dtype}{tuple(array.shape)}".encode(), digest_size=16)
        digest.update(array.data)  # no copy of the tensor
        return digest.hexdigest()
