"""Resume a model's own forward pass at layer L from ``blocks.L.hook_resid_pre``.

A sweep that edits layer L (ablation of its heads) recomputes the unchanged layers before L
once per edit unless it starts there. For a family whose spec says ``resumable`` (nothing but
the embedding module sits between ``inputs_embeds`` and the blocks), HF's forward run with
``inputs_embeds = resid_pre[L]`` and the block list cut to its tail ``L..`` is that forward.
Per-layer config lists (``config.layer_types``: sliding-window / full attention, local / global
RoPE per layer) are cut the same way when they vary, and both are restored afterwards.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from spectrascope.arch import Capability
from spectrascope.errors import ArchitectureError
from spectrascope.models.handle import as_model
from spectrascope.trace.tracer import model_output_tensor

if TYPE_CHECKING:
    from spectrascope.models.handle import ModelLike


def _layer_list(model: ModelLike) -> tuple[nn.Module, str, nn.ModuleList]:
    """(parent module, attribute name, the ModuleList of blocks)."""
    handle = as_model(model)
    base = getattr(handle.hf, "base_model", handle.hf)
    path, _, attribute = handle.spec.layers.rpartition(".")
    parent = base.get_submodule(path) if path else base
    return parent, attribute, getattr(parent, attribute)


def resumable(model: ModelLike) -> bool:
    """Whether the forward of ``model`` can start at a layer (its family's spec says so, its
    blocks are a ``ModuleList`` and it has a head that makes logits)."""
    handle = as_model(model)
    if not handle.has_spec or not handle.spec.resumable or not handle.spec.supports(Capability.RESUME):
        return False
    if getattr(handle.hf, "base_model", handle.hf) is handle.hf:
        return False
    try:
        return isinstance(_layer_list(handle)[2], nn.ModuleList)
    except AttributeError:
        return False


def _read_only(config: Any, name: str) -> bool:
    """Whether ``config.name`` is a property without a setter (computed, not stored)."""
    attribute = inspect.getattr_static(type(config), name, None)
    return isinstance(attribute, property) and attribute.fset is None


def forward_from_layer(
    model: ModelLike,
    layer: int,
    hidden: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    logits_to_keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits of HF's own forward over layers ``layer..`` from ``hidden`` = ``blocks.{layer}.hook_resid_pre``.

    Args:
        hidden: (batch, pos, d_model) the residual stream entering block ``layer``.
        attention_mask: (batch, pos) as for the full forward.
        logits_to_keep: positions whose logits to compute (when the forward takes it).

    Raises:
        ArchitectureError: the model's forward cannot be resumed (see :func:`resumable`).
    """
    handle = as_model(model)
    if not resumable(handle):
        raise ArchitectureError(f"the forward of {handle.name} cannot be resumed at a layer")
    hf = handle.hf
    parent, attribute, layers = _layer_list(handle)
    config = handle.config
    layer_types = getattr(config, "layer_types", None)
    if not (isinstance(layer_types, list) and len(layer_types) == len(layers) and len(set(layer_types)) > 1):
        layer_types = None
    cut_types = layer_types is not None
    if cut_types and _read_only(config, "layer_types"):
        raise ArchitectureError(f"{handle.name}: its per-layer types cannot be cut to resume the forward at a layer")
    kwargs: dict[str, Any] = {"inputs_embeds": hidden, "attention_mask": attention_mask, "use_cache": False}
    if logits_to_keep is not None and "logits_to_keep" in inspect.signature(hf.forward).parameters:
        kwargs["logits_to_keep"] = logits_to_keep
    try:
        setattr(parent, attribute, nn.ModuleList(list(layers)[layer:]))
        if layer_types is not None:
            config.layer_types = layer_types[layer:]
        return model_output_tensor(hf(**kwargs))
    finally:
        setattr(parent, attribute, layers)
        if cut_types:
            config.layer_types = layer_types


AGREEMENT_CHUNK_ROWS = 256
"""Rows of logits compared at a time by :func:`resumed_agrees`."""


def resumed_agrees(resumed: torch.Tensor, full: torch.Tensor, rtol: float = 1e-4) -> bool:
    """Whether logits of a resumed forward reproduce the full forward's: same shape, and no
    entry off by more than ``rtol`` x (largest |logit| + 1).

    The difference is taken :data:`AGREEMENT_CHUNK_ROWS` rows (positions) at a time: a whole
    batch's ``(resumed - full).abs()`` is two more vocabulary-sized tensors (2 x 400 MB for
    2,048 tokens of SmolLM2), and it was the study's peak resident memory."""
    if resumed.shape != full.shape:
        return False
    scale = float(torch.linalg.vector_norm(full, ord=float("inf"))) + 1.0
    a, b = resumed.reshape(-1, resumed.shape[-1]), full.reshape(-1, full.shape[-1])
    worst = 0.0
    for start in range(0, a.shape[0], AGREEMENT_CHUNK_ROWS):
        rows = slice(start, start + AGREEMENT_CHUNK_ROWS)
        worst = max(worst, float(torch.linalg.vector_norm(a[rows] - b[rows], ord=float("inf"))))
    return worst <= rtol * scale


_AGREED: weakref.WeakKeyDictionary[nn.Module, set[tuple[int, bool]]] = weakref.WeakKeyDictionary()


def resume_known_to_agree(hf: nn.Module, layer: int, masked: bool) -> bool:
    """Whether a resumed forward of ``hf`` at ``layer`` (with or without an attention mask) has
    already reproduced the full forward in this process (:func:`remember_agreement`).

    Agreement is a property of the model's code path, not of the tokens, so a study that resumes
    the same model at the same layer for many metrics checks it once."""
    return (layer, masked) in _AGREED.get(hf, set())


def remember_agreement(hf: nn.Module, layer: int, masked: bool) -> None:
    """Record that the forward of ``hf`` resumed at ``layer`` reproduced the full forward."""
    _AGREED.setdefault(hf, set()).add((layer, masked))


def resume_checked(
    hf: nn.Module, layer: int, masked: bool, resumed: Callable[[], torch.Tensor], full: torch.Tensor
) -> bool:
    """Whether ``hf``'s forward resumed at ``layer`` reproduces the full forward's logits ``full``
    (:func:`resumed_agrees`); ``resumed()`` runs the resumed forward, only when this model, layer
    and masking were not checked before in this process (:func:`resume_known_to_agree`)."""
    if resume_known_to_agree(hf, layer, masked):
        return True
    if not resumed_agrees(resumed(), full):
        return False
    remember_agreement(hf, layer, masked)
    return True
