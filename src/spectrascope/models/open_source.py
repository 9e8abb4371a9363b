"""Open any supported model source from a name, a path or an in-memory object."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import SourceError
from .gguf_source import GGUF_MAGIC, GGUFSource
from .memory_source import StateDictSource
from .safetensors_source import SafetensorsSource
from .tensor_source import SourceSpec, TensorSource
from .zoo import BUNDLED, bundled_path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _open_pickle(path: Path, allow_pickle: bool) -> TensorSource:
    if not allow_pickle:
        raise SourceError(
            f"{path}: refusing to unpickle a checkpoint (it can run arbitrary code); convert it to "
            "safetensors, or pass --allow-pickle to load it with torch.load(weights_only=True)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise SourceError(f"{path}: cannot load with weights_only=True ({err})") from None
    if not isinstance(state, Mapping):
        raise SourceError(f"{path}: does not hold a state dict")
    return StateDictSource(state)


def _open_file(path: Path, allow_pickle: bool) -> TensorSource:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return _open_pickle(path, allow_pickle)
    if suffix == ".gguf":
        return GGUFSource(path)
    if suffix == ".safetensors":
        return SafetensorsSource.open(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == GGUF_MAGIC:
        return GGUFSource(path)
    if _looks_like_safetensors(path):
        return SafetensorsSource.open(path)
    raise SourceError(f"{path}: unknown model format (expected .safetensors, .gguf or a HF directory)")


def _open_dir(path: Path, allow_pickle: bool) -> TensorSource:
    if any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").exists():
        return SafetensorsSource.open(path)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return GGUFSource(ggufs[0])
    pickles = [p for s in PICKLE_SUFFIXES for p in path.glob(f"*{s}")]
    if pickles:
        return _open_pickle(pickles[0], allow_pickle)
    raise SourceError(f"{path}: no model weights found (no .safetensors or .gguf files)")


def open_source(model: str | Path | torch.nn.Module | Mapping, allow_pickle: bool = False) -> TensorSource:
    """Open a model source.

    Args:
        model: a bundled model name (see ``spectrascope models``), a path to a HF directory,
            a .safetensors or .gguf file, a ``torch.nn.Module``, or a state dict.
        allow_pickle: allow .bin/.pt checkpoints, loaded with ``torch.load(weights_only=True)``.
    Raises:
        SourceError (or ModelNotInstalledError) with a one-line message.
    """
    if isinstance(model, (torch.nn.Module, Mapping)):
        return StateDictSource(model)
    if isinstance(model, str) and model in BUNDLED:
        model = bundled_path(model)
    path = Path(model)
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory (and not a bundled model name: {', '.join(BUNDLED)})")
    try:
        return _open_dir(path, allow_pickle) if path.is_dir() else _open_file(path, allow_pickle)
    except PermissionError as err:
        raise SourceError(f"{path}: cannot read ({err.strerror})") from None


def reopen(spec: SourceSpec) -> TensorSource:
    """Reopen a file-backed source from its spec (in a worker process)."""
    if spec.kind == "gguf":
        return GGUFSource(spec.paths[0])
    return SafetensorsSource([Path(p) for p in spec.paths], spec.config)
