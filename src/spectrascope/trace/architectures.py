"""Architecture registry: which Hugging Face tensor each site is, per ``config.model_type``.

Every site is read (and, when edited, replaced) by a PyTorch hook on a module of the
Hugging Face model; the model's own forward pass runs unchanged. A site is either the
first input of a module (forward pre-hook) or an output of a module (forward hook).
Paths are relative to the block module ``base_model.<layers>[L]``.

Llama family (``llama``, ``mistral``, ``qwen2``, ``qwen3``; pre-norm, RMSNorm, gated MLP),
block = ``model.layers[L]`` (``LlamaDecoderLayer``):

=====================  ==========================================================
``hook_resid_pre``     input of the block (the residual stream entering it)
``attn.hook_z``        input of ``self_attn.o_proj``, split ``(H, d_head)``
``attn.hook_pattern``  second output of ``self_attn`` (eager attention only)
``hook_attn_out``      first output of ``self_attn`` (= ``o_proj`` output)
``hook_resid_mid``     input of ``post_attention_layernorm``: the residual after
                       the attention add, ``resid_pre + attn_out``
``mlp.hook_post``      input of ``mlp.down_proj``: ``act(gate_proj(x)) * up_proj(x)``
``hook_mlp_out``       output of ``mlp`` (= ``down_proj`` output)
``hook_resid_post``    output of the block, ``resid_mid + mlp_out``
=====================  ==========================================================

GPT-2 (``gpt2``; pre-norm, LayerNorm), block = ``transformer.h[L]`` (``GPT2Block``):

=====================  ==========================================================
``hook_resid_pre``     input of the block
``attn.hook_z``        input of ``attn.c_proj`` (a ``Conv1D``), split ``(H, d_head)``
``attn.hook_pattern``  second output of ``attn`` (eager attention only)
``hook_attn_out``      first output of ``attn``: ``resid_dropout(c_proj(z))``
``hook_resid_mid``     input of ``ln_2``: the residual after the attention add
``mlp.hook_post``      input of ``mlp.c_proj``: ``act(c_fc(x))``
``hook_mlp_out``       output of ``mlp`` (``c_proj`` then dropout)
``hook_resid_post``    output of the block
=====================  ==========================================================

BERT (``bert``; post-norm: each sub-block ends in ``LayerNorm(residual + branch)``),
block = ``encoder.layer[L]`` (``BertLayer``). Because the LayerNorm sits on the residual
stream, ``resid_mid != resid_pre + attn_out`` here:

=====================  ==========================================================
``hook_resid_pre``     input of the block (embeddings output for L = 0)
``attn.hook_z``        input of ``attention.output.dense``, split ``(H, d_head)``
``attn.hook_pattern``  second output of ``attention.self`` (eager attention only)
``hook_attn_out``      output of ``attention.output.dense``: the attention branch
                       *before* dropout and ``LayerNorm(resid_pre + branch)``
``hook_resid_mid``     output of ``attention.output``:
                       ``LayerNorm(resid_pre + attn_out)``, the MLP's input
``mlp.hook_post``      input of ``output.dense``: ``act(intermediate.dense(x))``
``hook_mlp_out``       output of ``output.dense``: the MLP branch *before* dropout
                       and ``LayerNorm(resid_mid + branch)``
``hook_resid_post``    output of the block, ``LayerNorm(resid_mid + mlp_out)``
=====================  ==========================================================

Dropout is the identity in ``eval()`` mode, which is how sites are meant to be read.

*Editing ``hook_resid_mid`` on pre-norm models.* The residual add is not a module, so no
hook can replace its result; but the tensor entering the second norm *is* the residual
that the block adds the MLP output to (one tensor object). An edit at this site is
therefore written into that tensor in place (``copy_``), which edits both the MLP's
input and the residual exactly. Such sites are marked ``in_place``.

Adding an architecture = one :class:`Architecture` entry in :data:`REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from torch import nn

from spectrascope.errors import SiteError
from spectrascope.trace.attention import uses_eager_attention
from spectrascope.trace.sites import SiteKind


class Io(str, Enum):
    """Which side of a module a site reads."""

    INPUT = "input"
    """The module's first input, read by a forward pre-hook."""
    OUTPUT = "output"
    """The module's output (or one element of its output tuple), read by a forward hook."""


@dataclass(frozen=True)
class SitePoint:
    """Where one kind of site lives inside a block.

    Attributes:
        module: dotted path below the block module; ``""`` is the block itself.
        io: read the module's input or its output.
        index: the element to read when the module returns a tuple.
        in_place: an edit is written into the tensor in place instead of replacing it
            (for the residual between attention and MLP, see the module docstring).
    """

    module: str
    io: Io
    index: int = 0
    in_place: bool = False


@dataclass(frozen=True)
class Architecture:
    """How to find the blocks and the sites of one family of models.

    Attributes:
        name: family name used in messages.
        layers: dotted path of the ``ModuleList`` of blocks below ``model.base_model``.
        points: where each :class:`SiteKind` lives inside a block.
    """

    name: str
    layers: str
    points: Mapping[SiteKind, SitePoint]


_IN, _OUT = Io.INPUT, Io.OUTPUT

LLAMA = Architecture(
    name="llama",
    layers="layers",
    points={
        SiteKind.RESID_PRE: SitePoint("", _IN),
        SiteKind.Z: SitePoint("self_attn.o_proj", _IN),
        SiteKind.PATTERN: SitePoint("self_attn", _OUT, index=1),
        SiteKind.ATTN_OUT: SitePoint("self_attn", _OUT, index=0),
        SiteKind.RESID_MID: SitePoint("post_attention_layernorm", _IN, in_place=True),
        SiteKind.MLP_POST: SitePoint("mlp.down_proj", _IN),
        SiteKind.MLP_OUT: SitePoint("mlp", _OUT),
        SiteKind.RESID_POST: SitePoint("", _OUT),
    },
)

GPT2 = Architecture(
    name="gpt2",
    layers="h",
    points={
        SiteKind.RESID_PRE: SitePoint("", _IN),
        SiteKind.Z: SitePoint("attn.c_proj", _IN),
        SiteKind.PATTERN: SitePoint("attn", _OUT, index=1),
        SiteKind.ATTN_OUT: SitePoint("attn", _OUT, index=0),
        SiteKind.RESID_MID: SitePoint("ln_2", _IN, in_place=True),
        SiteKind.MLP_POST: SitePoint("mlp.c_proj", _IN),
        SiteKind.MLP_OUT: SitePoint("mlp", _OUT),
        SiteKind.RESID_POST: SitePoint("", _OUT),
    },
)

BERT = Architecture(
    name="bert",
    layers="encoder.layer",
    points={
        SiteKind.RESID_PRE: SitePoint("", _IN),
        SiteKind.Z: SitePoint("attention.output.dense", _IN),
        SiteKind.PATTERN: SitePoint("attention.self", _OUT, index=1),
        SiteKind.ATTN_OUT: SitePoint("attention.output.dense", _OUT),
        SiteKind.RESID_MID: SitePoint("attention.output", _OUT),
        SiteKind.MLP_POST: SitePoint("output.dense", _IN),
        SiteKind.MLP_OUT: SitePoint("output.dense", _OUT),
        SiteKind.RESID_POST: SitePoint("", _OUT),
    },
)

REGISTRY: dict[str, Architecture] = {
    "llama": LLAMA,
    "mistral": LLAMA,
    "qwen2": LLAMA,
    "qwen3": LLAMA,
    "gpt2": GPT2,
    "bert": BERT,
}
"""``config.model_type`` -> :class:`Architecture`."""


@dataclass(frozen=True)
class BoundModel:
    """An architecture resolved against one model instance.

    Attributes:
        model: the Hugging Face model.
        architecture: its registry entry.
        blocks: the block modules, one per layer.
        n_heads: number of query heads (``config.num_attention_heads``).
        eager: whether the model runs eager attention (pattern sites exist).
    """

    model: nn.Module
    architecture: Architecture
    blocks: tuple[nn.Module, ...]
    n_heads: int
    eager: bool

    @property
    def n_layers(self) -> int:
        """Number of blocks."""
        return len(self.blocks)

    @property
    def observable_kinds(self) -> list[SiteKind]:
        """Kinds of site this model provides as it runs now (pattern only under eager attention)."""
        kinds = list(self.architecture.points)
        return kinds if self.eager else [kind for kind in kinds if kind is not SiteKind.PATTERN]

    def point(self, kind: SiteKind) -> SitePoint:
        """Where ``kind`` lives inside a block."""
        return self.architecture.points[kind]

    def module(self, layer: int, kind: SiteKind) -> nn.Module:
        """The module whose hook provides site ``kind`` of block ``layer``."""
        path = self.point(kind).module
        block = self.blocks[layer]
        return block.get_submodule(path) if path else block


def bind(hf_model: nn.Module) -> BoundModel:
    """Resolve the registry entry of ``hf_model``; :class:`SiteError` if it is unsupported.

    Checks that every module the architecture names exists in every block, so a model
    whose layout differs from its ``model_type``'s fails here with the missing path.
    """
    model_type = getattr(getattr(hf_model, "config", None), "model_type", None)
    supported = ", ".join(sorted(REGISTRY))
    if model_type is None:
        raise SiteError(
            f"{type(hf_model).__name__} is not a Hugging Face transformer (no config.model_type); "
            f"supported model types: {supported}"
        )
    architecture = REGISTRY.get(model_type)
    if architecture is None:
        raise SiteError(f"model type {model_type!r} is not supported by the tracer; supported: {supported}")
    base = getattr(hf_model, "base_model", hf_model)
    try:
        blocks = tuple(base.get_submodule(architecture.layers))
        for block in blocks:
            for point in architecture.points.values():
                if point.module:
                    block.get_submodule(point.module)
    except AttributeError as missing:
        raise SiteError(
            f"{type(hf_model).__name__} (model type {model_type!r}) does not have the module layout "
            f"of the {architecture.name} family: {missing}"
        ) from None
    return BoundModel(
        model=hf_model,
        architecture=architecture,
        blocks=blocks,
        n_heads=int(hf_model.config.num_attention_heads),
        eager=uses_eager_attention(hf_model),
    )
