"""A series of training checkpoints, ordered by training step.

A series is given as one or more of:

* checkpoint folders or files (a HF folder with safetensors, a ``.safetensors`` or ``.gguf``
  file), each named with its step: ``step1000``, ``checkpoint-1000``, ``ckpt_1000.gguf``;
* glob patterns (``runs/ckpt-*``), expanded in order;
* a parent folder whose entries are named by step (Pythia-style ``step0/ step1000/ ...``, or
  ``step100.safetensors ...``): every entry with a step in its name is one checkpoint.

The step is read from the name: the number after ``step``, ``checkpoint``, ``ckpt``, ``iter``
or ``global_step`` when there is one, else the last number in the name. A named checkpoint
that does not exist stays in the series as *missing*: tracking fails its rows and keeps
the others. Architectures are compared across the series by the names and shapes of the 2-D
tensors: a mismatch is one clear :class:`~spectrascope.errors.SpectrascopeError`.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpectrascopeError

WEIGHT_SUFFIXES = (".safetensors", ".gguf")
_STEP_WORD = re.compile(r"(?:global_step|step|checkpoint|ckpt|iter)[-_=]?(\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"\d+")
_GLOB_CHARS = set("*?[")


class SeriesError(SpectrascopeError):
    """A checkpoint series cannot be formed (no steps in names, duplicates, mixed architectures)."""


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of a series: its training ``step`` and its ``path`` (file or folder)."""

    step: int
    path: Path

    @property
    def label(self) -> str:
        """``step<N>`` zero-padded to 9 digits, so labels sort like steps (file names)."""
        return f"step{self.step:09d}"


def step_of(name: str) -> int | None:
    """The training step in a checkpoint's file or folder name, or None.

    >>> step_of("step1000"), step_of("checkpoint-250"), step_of("pythia-70m-ckpt_3.gguf"), step_of("run2_7")
    (1000, 250, 3, 7)
    """
    stem = name
    for suffix in WEIGHT_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    words = _STEP_WORD.findall(stem)
    if words:
        return int(words[-1])
    numbers = _NUMBER.findall(stem)
    return int(numbers[-1]) if numbers else None


def _holds_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.gguf")) or (folder / "config.json").exists()


def _stepped_entries(folder: Path) -> list[Path]:
    """Entries of a parent folder that are checkpoints named by step (folders or weight files)."""
    entries = []
    for entry in sorted(folder.iterdir()):
        is_checkpoint = entry.is_dir() or entry.name.lower().endswith(WEIGHT_SUFFIXES)
        if is_checkpoint and step_of(entry.name) is not None:
            entries.append(entry)
    return entries


def _expand(item: str | Path) -> list[Path]:
    text = str(item)
    if _GLOB_CHARS & set(text):
        matches = [Path(m) for m in sorted(glob.glob(text))]
        if not matches:
            raise SeriesError(f"no checkpoint matches {text!r}")
        return matches
    path = Path(text).expanduser()
    if path.is_dir() and not _holds_weights(path):
        entries = _stepped_entries(path)
        if not entries:
            raise SeriesError(f"{path}: holds no weights and no entries named by step (e.g. step1000/)")
        return entries
    return [path]  # a file, a checkpoint folder, or a missing checkpoint (kept: its rows fail)


def checkpoint_series(checkpoints: str | Path | Sequence[str | Path]) -> list[Checkpoint]:
    """The checkpoints named by ``checkpoints``, ordered by step (see the module docstring).

    Raises:
        SeriesError: nothing given, a name without a step, two checkpoints with one step.
    """
    items = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    if not items:
        raise SeriesError("no checkpoints given")
    paths = [p for item in items for p in _expand(item)]
    series: dict[int, Checkpoint] = {}
    for path in paths:
        step = step_of(path.name)
        if step is None:
            raise SeriesError(
                f"{path}: no training step in its name (name checkpoints like step1000 or checkpoint-1000)"
            )
        if step in series and series[step].path != path:
            raise SeriesError(f"two checkpoints for step {step}: {series[step].path} and {path}")
        series[step] = Checkpoint(step, path)
    return [series[s] for s in sorted(series)]


def matrix_signature(tensors) -> dict[str, tuple[int, ...]]:
    """name -> shape of the 2-D tensors of a source's ``tensors()`` list: what must match."""
    return {t.name: tuple(t.shape) for t in tensors if len(t.shape) == 2}


def check_same_architecture(signatures: dict[Checkpoint, dict[str, tuple[int, ...]]]) -> None:
    """Raise one clear SeriesError when two checkpoints' 2-D tensors differ in name or shape."""
    if len(signatures) < 2:
        return
    (first, ref), *rest = sorted(signatures.items(), key=lambda kv: kv[0].step)
    for cp, sig in rest:
        if sig == ref:
            continue
        missing = sorted(set(ref) - set(sig))
        extra = sorted(set(sig) - set(ref))
        if missing or extra:
            what = f"lacks {missing[0]}" if missing else f"has an extra tensor {extra[0]}"
        else:
            name = next(n for n in ref if ref[n] != sig[n])
            what = f"has {name} of shape {sig[name]} instead of {ref[name]}"
        raise SeriesError(
            f"mixed architectures in the series: step {cp.step} ({cp.path}) {what} (step {first.step}, {first.path}); "
            "track checkpoints of one model"
        )
