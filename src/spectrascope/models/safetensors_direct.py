"""Direct reads of 2-D and stacked 3-D safetensors tensors into float32, chunk by chunk.

bf16/f16/f32/f64 tensors of a safetensors checkpoint are read straight from the file in row
chunks with plain reads: peak memory is the float32 result plus one chunk (no torch import
for bf16, no memory-mapped pages kept resident, no second full-size copy). Anything else
(other dtypes, other ranks, read errors) goes through the source's own ``load``, which
reports problems in its own words.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from ..errors import SourceError
from .tensor_source import SourceSpec, TensorSource

_ST_DTYPES = {"BF16": (np.uint16, 2), "F16": (np.float16, 2), "F32": (np.float32, 4), "F64": (np.float64, 8)}
READ_CHUNK_BYTES = 16 * 2**20
"""Bytes of one chunk of a direct read."""


class SafetensorsDirect:
    """The headers of safetensors files, and direct float32 reads of their tensors."""

    def __init__(self, paths: tuple[str, ...]):
        self.entries: dict[str, tuple[str, int, str, tuple]] = {}
        for path in paths:
            with open(path, "rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size))
            for name, meta in header.items():
                if name != "__metadata__":
                    self.entries[name] = (path, 8 + size + meta["data_offsets"][0], meta["dtype"], tuple(meta["shape"]))

    def can_read(self, name: str, ndim: int = 2) -> bool:
        """Whether ``name`` is a tensor of rank ``ndim`` of a directly readable dtype."""
        entry = self.entries.get(name)
        return entry is not None and entry[2] in _ST_DTYPES and len(entry[3]) == ndim

    def load(self, name: str) -> np.ndarray:
        """A 2-D tensor as float32, shape as stored."""
        path, offset, dtype, (rows, cols) = self.entries[name]
        return self._read(name, path, offset, dtype, rows, cols)

    def load_slice(self, name: str, index: int) -> np.ndarray:
        """Matrix ``index`` of a 3-D ``(n, rows, cols)`` tensor; only its bytes are read."""
        path, offset, dtype, (n, rows, cols) = self.entries[name]
        if not 0 <= index < n:
            raise ValueError(f"{name!r} has {n} matrices, not {index + 1}")
        return self._read(name, path, offset + index * rows * cols * _ST_DTYPES[dtype][1], dtype, rows, cols)

    def _read(self, name: str, path: str, offset: int, dtype: str, rows: int, cols: int) -> np.ndarray:
        np_dtype, itemsize = _ST_DTYPES[dtype]
        out = np.empty((rows, cols), dtype=np.float32)
        step = max(1, READ_CHUNK_BYTES // max(1, cols * itemsize))
        with open(path, "rb") as fh:
            fh.seek(offset)
            for start in range(0, rows, step):
                stop = min(rows, start + step)
                count = (stop - start) * cols
                buf = np.fromfile(fh, dtype=np_dtype, count=count)
                if buf.size != count:
                    raise SourceError(f"{path}: tensor {name!r} is truncated")
                buf = buf.reshape(stop - start, cols)
                if dtype == "BF16":  # bf16 is the top half of a float32: widen and shift in place
                    bits = out[start:stop].view(np.uint32)
                    bits[...] = buf
                    bits <<= np.uint32(16)
                else:
                    out[start:stop] = buf
        return out


_READERS: dict[SourceSpec, SafetensorsDirect | None] = {}


def direct_reader(source: TensorSource) -> SafetensorsDirect | None:
    """The direct reader of a safetensors source (one per process and source), or None."""
    spec = source.spec() if hasattr(source, "spec") else None
    if spec is None or spec.kind != "safetensors":
        return None
    if spec not in _READERS:
        try:
            _READERS[spec] = SafetensorsDirect(spec.paths)
        except Exception:  # noqa: BLE001 - an unreadable header: the source's load reports it
            _READERS[spec] = None
    return _READERS[spec]


def load_matrix(source: TensorSource, name: str) -> np.ndarray:
    """A 2-D tensor as float32, read directly from a safetensors file when possible."""
    direct = direct_reader(source)
    if direct is not None and direct.can_read(name):
        try:
            return direct.load(name)
        except (OSError, ValueError):
            pass  # let the source report the problem in its own words
    return source.load(name)


def load_stacked_matrix(source: TensorSource, name: str, index: int) -> np.ndarray:
    """Matrix ``index`` of a stacked ``(n, rows, cols)`` tensor as float32 (only that slice is
    read from a safetensors file)."""
    direct = direct_reader(source)
    if direct is not None and direct.can_read(name, ndim=3):
        try:
            return direct.load_slice(name, index)
        except (OSError, ValueError):
            pass
    stacked = source.load(name)
    if stacked.ndim != 3 or not 0 <= index < stacked.shape[0]:
        raise SourceError(f"{name!r} has shape {tuple(stacked.shape)}: no matrix {index}")
    return np.ascontiguousarray(stacked[index], dtype=np.float32)
