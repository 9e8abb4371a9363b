"""What a run's results depend on, so that a resumed run never mixes results of different inputs.

A fingerprint is a JSON-ready dict: the package version, the model source, the seed and every
option that changes the numbers. The model source is identified by its files (each weight
file's name, size and modification time) when it has files, else by a digest of its tensors'
contents. :func:`differences` names what differs between a recorded and a current fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from .models.tensor_source import TensorSource

NESTED = ("options", "budget", "corpora")
"""Fingerprint entries whose own keys are named one by one in :func:`differences`."""


def model_path(model: str | Path) -> Path:
    """The path behind a bundled model name, the toy model's name, or a path."""
    from .models.zoo import BUNDLED, TOY_INDUCTION_DIR, bundled_path, is_toy_name

    if isinstance(model, str) and model in BUNDLED:
        return bundled_path(model)
    if is_toy_name(model):
        return TOY_INDUCTION_DIR
    return Path(model)


def files_identity(paths: list[Path], root: Path | None = None) -> list[list]:
    """[name, size in bytes, mtime in ns] of each existing file (names relative to ``root``)."""
    out = []
    for f in paths:
        if f.is_file():
            stat = f.stat()
            out.append([str(f.relative_to(root) if root is not None else f.name), stat.st_size, stat.st_mtime_ns])
    return out


def model_identity(model: str | Path) -> dict:
    """The files behind a bundled model name or a path: name, size and mtime of each."""
    path = model_path(model).expanduser().resolve()
    if path.is_dir():
        return {"path": str(path), "files": files_identity(sorted(p for p in path.rglob("*") if p.is_file()), path)}
    return {"path": str(path), "files": files_identity([path])}


def source_identity(source: TensorSource) -> dict:
    """An opened source: its files (name, size, mtime) when it has them, else a digest of every
    tensor's name, shape and contents (float32); and a digest of its tensor listing."""
    listing = hashlib.blake2b(digest_size=16)
    for info in source.tensors():
        listing.update(f"{info.name}|{tuple(info.shape)}|{info.dtype}\n".encode())
    identity = {"description": source.description, "tensors": listing.hexdigest()}
    spec = source.spec() if hasattr(source, "spec") else None
    if spec is not None:
        return {**identity, "files": files_identity([Path(p).resolve() for p in spec.paths], Path("/"))}
    contents = hashlib.blake2b(digest_size=16)
    for info in source.tensors():
        contents.update(info.name.encode())
        contents.update(source.load(info.name).tobytes())
    return {**identity, "contents": contents.hexdigest()}


def differences(recorded: Mapping, current: Mapping) -> list[str]:
    """Human-readable names of what differs between two fingerprints (empty when equal):
    top-level entries by name, the entries of :data:`NESTED` ones key by key."""
    out = []
    for key in dict.fromkeys([*recorded, *current]):
        old, new = recorded.get(key), current.get(key)
        if old == new:
            continue
        if key in NESTED and isinstance(old, Mapping) and isinstance(new, Mapping):
            out += [
                k if key == "options" else f"{key} {k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
            ]
        else:
            out.append(key)
    return out
