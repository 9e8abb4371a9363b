"""A model's family spec bound to its modules: which module's hook provides each site.

Every site is read (and, when edited, replaced) by a PyTorch hook on a module of the
Hugging Face model; the model's own forward pass runs unchanged. A site is either the
first input of a module (forward pre-hook) or an output of a module (forward hook).
Where each site lives, per family, is in the family's spec (:mod:`spectrascope.arch`,
one file per family, with a table of its sites); paths are relative to the block module
``base_model.<layers>[L]``.

Dropout is the identity in ``eval()`` mode, which is how sites are meant to be read.

*Editing ``hook_resid_mid`` on pre-norm models.* The residual add is not a module, so no
hook can replace its result; but the tensor entering the next module (the second norm,
or the MLP of OLMo-2) *is* the residual that the block adds the MLP output to (one tensor
object). An edit at this site is therefore written into that tensor in place (``copy_``),
which edits both the MLP's input and the residual exactly. Such sites are marked
``in_place``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from spectrascope.arch import ArchSpec, Capability, Io, SitePoint
from spectrascope.errors import ArchitectureError, SiteError
from spectrascope.trace.attention import uses_eager_attention
from spectrascope.trace.sites import SiteKind

if TYPE_CHECKING:
    from spectrascope.models.handle import ModelHandle, ModelLike

__all__ = ["BoundModel", "Io", "SitePoint", "bind"]


@dataclass(frozen=True)
class BoundModel:
    """A family spec resolved against one model instance.

    Attributes:
        model: the Hugging Face model.
        spec: its family spec.
        blocks: the block modules, one per layer.
        n_heads: number of query heads (None for a model without attention).
        eager: whether the model runs eager attention (pattern sites exist).
        handle: the model handle the binding was made from.
    """

    model: nn.Module
    spec: ArchSpec
    blocks: tuple[nn.Module, ...]
    n_heads: int | None
    eager: bool
    handle: ModelHandle

    @property
    def architecture(self) -> ArchSpec:
        """The family spec (the name earlier versions used)."""
        return self.spec

    @property
    def n_layers(self) -> int:
        """Number of blocks."""
        return len(self.blocks)

    @property
    def kinds(self) -> list[SiteKind]:
        """Every kind of site the family provides, in forward order."""
        return [kind for kind in SiteKind if kind in self.spec.points]

    @property
    def observable_kinds(self) -> list[SiteKind]:
        """Kinds of site this model provides as it runs now (pattern only under eager attention)."""
        return self.kinds if self.eager else [kind for kind in self.kinds if kind is not SiteKind.PATTERN]

    def point(self, kind: SiteKind) -> SitePoint:
        """Where ``kind`` lives inside a block."""
        return self.spec.points[kind]

    def module(self, layer: int, kind: SiteKind) -> nn.Module:
        """The module whose hook provides site ``kind`` of block ``layer``."""
        path = self.point(kind).module
        block = self.blocks[layer]
        return block.get_submodule(path) if path else block


def bind(model: ModelLike) -> BoundModel:
    """Resolve the family spec of ``model``; :class:`SiteError` if it is unsupported.

    Checks that every module the spec names exists in every block, so a model whose layout
    differs from its ``model_type``'s fails here with the missing path.
    """
    from spectrascope.models.handle import as_model

    handle = as_model(model)
    hf = handle.hf
    try:
        spec = handle.spec
        spec.require(Capability.SITES, "tracing")
    except ArchitectureError as err:
        raise SiteError(str(err)) from None
    base = getattr(hf, "base_model", hf)
    try:
        blocks = tuple(base.get_submodule(spec.layers).children())
        for block in blocks:
            for point in spec.points.values():
                if point.module:
                    block.get_submodule(point.module)
    except AttributeError as missing:
        raise SiteError(
            f"{type(hf).__name__} (model type {handle.config.model_type!r}) does not have the module layout "
            f"of the {spec.name} family: {missing}"
        ) from None
    n_heads = handle.geometry.n_heads if spec.supports(Capability.ATTENTION) else None
    return BoundModel(
        model=hf, spec=spec, blocks=blocks, n_heads=n_heads, eager=uses_eager_attention(hf), handle=handle
    )
