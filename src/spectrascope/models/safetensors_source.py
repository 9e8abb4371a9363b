"""Safetensors sources: one file, a HF directory, or a sharded checkpoint with an index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from ..errors import SourceError
from .tensor_source import SourceSpec, TensorInfo

INDEX_NAME = "model.safetensors.index.json"
NUMPY_DTYPES = {"F64", "F32", "F16", "I64", "I32", "I16", "I8", "U8", "BOOL"}


def safetensors_files(path: Path) -> list[Path]:
    """The safetensors files that make up the model at ``path`` (file or directory)."""
    if path.is_file():
        return [path]
    index = path / INDEX_NAME
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as err:
            raise SourceError(f"{index}: not a valid safetensors index ({err})") from None
        files = sorted({path / f for f in weight_map.values()})
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise SourceError(f"{index} names shard(s) that do not exist: {', '.join(missing)}")
        return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise SourceError(f"{path}: no .safetensors files in this directory")
    return files


def read_config(path: Path) -> dict:
    """config.json beside the weights, or {}."""
    folder = path if path.is_dir() else path.parent
    cfg = folder / "config.json"
    if not cfg.exists():
        return {}
    try:
        return json.loads(cfg.read_text())
    except ValueError as err:
        raise SourceError(f"{cfg}: invalid JSON ({err})") from None


class SafetensorsSource:
    """Tensors from one or more safetensors files, opened lazily (memory-mapped).

    Build it with :meth:`open` (a file or a directory) or directly from a list of files.
    """

    def __init__(self, files: list[Path], config: dict, description: str = ""):
        self.files = [Path(f) for f in files]
        self._config = config
        self.description = description or f"safetensors: {self.files[0]}"
        self._where: dict[str, Path] = {}
        self._dtype: dict[str, str] = {}
        infos: list[TensorInfo] = []
        for f in self.files:
            try:
                with safe_open(str(f), framework="np") as handle:
                    for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                        sl = handle.get_slice(key)
                        self._where[key] = f
                        self._dtype[key] = sl.get_dtype()
                        infos.append(TensorInfo(key, tuple(sl.get_shape()), sl.get_dtype()))
            except (SafetensorError, OSError) as err:  # bad header; missing or unreadable file
                raise SourceError(f"{f}: not a readable safetensors file ({err})") from None
        self._infos = _drop_tied(infos, config)

    @classmethod
    def open(cls, path: str | Path, config: dict | None = None) -> SafetensorsSource:
        """Open a .safetensors file, a HF directory, or a sharded checkpoint directory."""
        path = Path(path)
        cfg = read_config(path) if config is None else config
        return cls(safetensors_files(path), cfg, f"safetensors: {path}")

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def load(self, name: str) -> np.ndarray:
        if name not in self._where:
            raise SourceError(f"no tensor named {name!r} in {self.description}")
        # numpy has no bfloat16/float8: those go through torch (imported only then)
        numpy_ok = self._dtype[name] in NUMPY_DTYPES
        try:
            with safe_open(str(self._where[name]), framework="np" if numpy_ok else "pt") as handle:
                tensor = handle.get_tensor(name)
        except Exception as err:  # noqa: BLE001 - safetensors and torch (bf16/fp8) raise many kinds; each becomes one line
            raise SourceError(f"{self._where[name]}: cannot read tensor {name!r} ({err})") from None
        if numpy_ok:
            return np.asarray(tensor, dtype=np.float32)
        import torch

        return tensor.to(torch.float32).numpy()

    def config(self) -> dict:
        return dict(self._config)

    def spec(self) -> SourceSpec:
        return SourceSpec("safetensors", tuple(str(f) for f in self.files), self._config)


UNEMBED_NAMES = ("lm_head.weight", "embed_out.weight", "cls.predictions.decoder.weight")


def _drop_tied(infos: list[TensorInfo], config: dict) -> list[TensorInfo]:
    """Drop the unembedding when the config says it is tied to the embedding (analyzed once)."""
    if not config.get("tie_word_embeddings", False):
        return infos
    return [i for i in infos if i.name not in UNEMBED_NAMES]
