"""Pieces shared by the built-in training experiments: the checkpoint schedule, writing a
checkpoint as a Hugging Face folder, and one seeded AdamW set-up."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import SpectrascopeError
from .series import Checkpoint


def log_schedule(steps: int, n_checkpoints: int) -> list[int]:
    """Checkpoint steps 0 .. ``steps``, log-spaced: step 0, then ``n_checkpoints - 1`` steps
    geometrically spaced from 1 to ``steps`` (rounded; duplicates at the start merge, so
    there may be fewer): ``log_schedule(1000, 5) == [0, 1, 10, 100, 1000]``."""
    if steps < 1 or n_checkpoints < 2:
        raise SpectrascopeError(f"need at least 1 step and 2 checkpoints (got {steps}, {n_checkpoints})")
    grid = np.rint(np.geomspace(1, steps, n_checkpoints - 1)).astype(int)
    return [0, *sorted({int(s) for s in grid})]


def save_checkpoint(model: torch.nn.Module, folder: Path) -> Path:
    """Write ``model`` as ``folder/config.json`` + ``folder/model.safetensors`` (float32),
    into a temporary folder renamed when complete. Returns ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config["architectures"] = [type(model).__name__]
    (tmp / "config.json").write_text(json.dumps(config, indent=1, default=str))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def checkpoint_folder(root: Path, step: int) -> Path:
    """Where the experiments save step ``step``: ``root/step<step>``."""
    return Path(root) / f"step{step}"


def saved_series(root: Path, steps: list[int]) -> list[Checkpoint]:
    """The checkpoints an experiment saved under ``root`` for ``steps``."""
    return [Checkpoint(s, checkpoint_folder(root, s)) for s in steps]


def adamw(
    model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.98)
) -> torch.optim.AdamW:
    """AdamW with weight decay on the trainable matrices (2-D) only, none on norms and biases."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for _, p in trainable if p.ndim == 2]
    rest = [p for _, p in trainable if p.ndim != 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=lr, betas=betas
    )
