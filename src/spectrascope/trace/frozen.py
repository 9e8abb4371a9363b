"""Gradients with respect to activations only: a model's parameters out of the autograd graph."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Every parameter of ``model`` with ``requires_grad=False`` for the block, restored after.

    A backward pass then computes only what the activations' gradients need: linear layers
    save no inputs for weight gradients, which on a causal LM is most of the saved memory."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
