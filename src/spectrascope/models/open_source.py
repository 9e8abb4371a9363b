"""Open any supported model source from a name, a path or an in-memory object."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

from ..errors import SourceError
from .gguf_source import GGUF_MAGIC, GGUFSource
from .safetensors_source import SafetensorsSource, read_config
from .tensor_source import SourceSpec, TensorSource
from .zoo import BUNDLED, TOY_INDUCTION_DIR, bundled_path, is_toy_name

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _open_pickle(paths: Path | list[Path], allow_pickle: bool, config: dict | None = None) -> TensorSource:
    """State dict(s) from pickle checkpoint file(s); shards are merged (all held in memory)."""
    paths = [paths] if isinstance(paths, Path) else paths
    path = paths[0]
    if not allow_pickle:
        raise SourceError(
            f"{path}: refusing to unpickle a checkpoint (it can run arbitrary code): convert it to safetensors",
            option="allow_pickle=True",
            hint="or pass {option} to load it with torch.load(weights_only=True)",
        )
    import torch

    from .memory_source import StateDictSource

    state: dict = {}
    for p in paths:
        try:
            shard = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many kinds; each becomes one line
            raise SourceError(f"{p}: cannot load with weights_only=True ({_pickle_problem(err)})") from None
        if not isinstance(shard, Mapping):
            raise SourceError(f"{p}: does not hold a state dict")
        state.update(shard)
    source = StateDictSource(state, config)
    source.description = f"pickle: {path if len(paths) == 1 else path.parent}"
    return source


def _pickle_problem(err: BaseException) -> str:
    """torch.load's error in one line: the object it refused (an unsupported global), else its
    first line; never torch's advice to load with weights_only=False."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    refused = [line for line in lines if "unsupported global" in line.lower()]
    if refused:
        return f"it holds more than tensors: {refused[0].rstrip('.')}"
    first = lines[0] if lines else type(err).__name__
    return first.split(". Re-running")[0].split("Re-running")[0].strip() or type(err).__name__


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
    index = path / "pytorch_model.bin.index.json"
    if index.exists():
        try:
            shards = sorted({path / f for f in json.loads(index.read_text())["weight_map"].values()})
        except (ValueError, KeyError) as err:
            raise SourceError(f"{index}: not a valid checkpoint index ({err})") from None
        return _open_pickle(shards, allow_pickle, read_config(path))
    pickles = sorted(p for s in PICKLE_SUFFIXES for p in path.glob(f"*{s}"))
    if len(pickles) > 1:
        raise SourceError(f"{path}: several checkpoint files and no pytorch_model.bin.index.json; name one file")
    if pickles:
        return _open_pickle(pickles[0], allow_pickle, read_config(path))
    raise SourceError(f"{path}: no model weights found (no .safetensors or .gguf files)")


def _is_module(obj) -> bool:
    torch = sys.modules.get("torch")  # an nn.Module can only exist if torch is imported
    return torch is not None and isinstance(obj, torch.nn.Module)


def open_source(model, allow_pickle: bool = False) -> TensorSource:
    """Open a model source.

    Args:
        model: a bundled model name (see ``spectrascope models``), ``toy-induction`` (the
            shipped toy model), a path to a HF directory,
            a .safetensors or .gguf file, a ``torch.nn.Module``, or a state dict.
        allow_pickle: allow .bin/.pt checkpoints, loaded with ``torch.load(weights_only=True)``.
    Raises:
        SourceError (or ModelNotInstalledError) with a one-line message.
    """
    if _is_module(model) or isinstance(model, Mapping):
        from .memory_source import StateDictSource

        return StateDictSource(model)
    if isinstance(model, str) and model in BUNDLED:
        model = bundled_path(model)
    elif is_toy_name(model):
        model = TOY_INDUCTION_DIR
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
