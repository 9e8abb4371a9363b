"""The options several verbs share, defined once: their defaults come from the library.

Each is an ``Annotated`` type a verb uses as ``model: ModelArg = DEFAULT_MODEL``. Counts are
declared with ``min=`` (click ``IntRange``), so a value out of range is refused before any work
with a message that names the option of the command that was run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..corpora import DEFAULT_CORPORA
from ..models.zoo import DEFAULT_MODEL

__all__ = [
    "DEFAULT_CORPORA",
    "DEFAULT_MODEL",
    "DEFAULT_OUT",
    "CorpusOpt",
    "DeviceOpt",
    "ModelArg",
    "OutOpt",
    "QuietOpt",
    "SeedOpt",
    "require_device",
]

MODEL_HELP = "bundled model name, toy-induction, HF directory, .safetensors or .gguf file"

ModelArg = Annotated[str, typer.Argument(help=MODEL_HELP, show_default=True)]
CorpusOpt = Annotated[str, typer.Option("--corpus", help="domains: comma-separated built-in names and/or paths")]
OutOpt = Annotated[Path, typer.Option("--out", help="output directory")]
SeedOpt = Annotated[int, typer.Option("--seed", help="seed for all randomness")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="no progress bar")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda (cuda:N) or auto")]
DEFAULT_OUT = Path("spectrascope-out")


def require_device(device: str) -> str:
    """``device`` if it names a device this machine has ("auto" resolves to cuda when present),
    else an OptionError naming ``--device`` (:func:`spectrascope.models.loaded.resolve_device`)."""
    from ..models.loaded import resolve_device

    return str(resolve_device(device))
