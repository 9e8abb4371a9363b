"""The architecture spec: everything spectrascope knows about one model family, as data.

An :class:`ArchSpec` is resolved for one config (:func:`spectrascope.arch.spec_for`): a
family file (``llama.py``, ``gemma.py`` ...) reads the config attributes that change the
forward pass, picks the matching layout and either handles each attribute or records a
one-line refusal per :class:`Capability`. Nothing else in the package knows a family.

What a spec holds:

- **weights**: :class:`WeightPattern` per tensor name below a block (and global ones for
  embeddings and heads): role, whether the tensor is stored transposed (GPT-2's ``Conv1D``),
  whether it stacks one matrix per expert (``(n_experts, out, in)``), and the expert index
  when the name has one;
- **attention**: :class:`AttentionSpec`: the config keys of the head counts, how a fused
  ``qkv`` splits (:class:`QkvLayout`), per-head q/k norms;
- **block**: :class:`BlockKind` (the residual identities that hold) and the
  TransformerLens site of each module (:class:`SitePoint` per
  :class:`~spectrascope.arch.site_kinds.SiteKind`), below ``base_model.<layers>[L]``;
- **readers**: for each reader role (q, k, v, mlp_gate ...), the norm module whose output
  it reads, with its :class:`NormKind` (so the norm gain can be folded into the matrix);
- **readout**: the final norm, the unembedding and any logit softcapping or scale;
- **moe**: the router module and the config keys of the expert counts;
- **gguf**: llama.cpp tensor names and whether q/k rows are rotary-permuted;
- whether the forward can be **resumed** at a layer from ``hook_resid_pre``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np

from spectrascope.arch.site_kinds import SiteKind
from spectrascope.errors import ArchitectureError


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
        in_place: an edit is written into the tensor in place instead of replacing it (the
            residual between attention and MLP is not a module's output; the tensor entering
            the next module *is* the residual, so writing into it edits both exactly).
    """

    module: str
    io: Io
    index: int = 0
    in_place: bool = False


class BlockKind(str, Enum):
    """How a block adds its sub-blocks to the residual stream, and the identities that hold.

    ``attn_out`` and ``mlp_out`` are always defined as what is added to the residual stream.
    """

    PRE_NORM = "pre_norm"
    """``mid = pre + attn(norm1(pre))``, ``post = mid + mlp(norm2(mid))`` (Llama, GPT-2):
    ``resid_mid = resid_pre + attn_out`` and ``resid_post = resid_mid + mlp_out``."""
    SANDWICH = "sandwich"
    """Norms before *and after* each sub-block (Gemma-2, Gemma-3):
    ``mid = pre + norm_post(attn(norm_pre(pre)))``. ``attn_out`` / ``mlp_out`` are read after
    the post-norms, so the identities of :attr:`PRE_NORM` hold."""
    POST_SUBLAYER = "post_sublayer"
    """Norms only after each sub-block (OLMo-2): ``mid = pre + norm(attn(pre))``; sites as in
    :attr:`SANDWICH`, the same identities."""
    PARALLEL = "parallel"
    """Attention and MLP read the same block input (GPT-J, GPT-NeoX with
    ``use_parallel_residual``, Falcon): ``resid_post = resid_pre + attn_out + mlp_out``; there
    is no ``resid_mid``."""
    POST_NORM = "post_norm"
    """Norm on the residual stream after each add (BERT): ``resid_mid = LN(resid_pre + attn_out)``,
    ``resid_post = LN(resid_mid + mlp_out)``."""
    RECURRENT = "recurrent"
    """No attention (Mamba): ``resid_post = resid_pre + mixer(norm(resid_pre))``; only the
    residual sites exist."""


class NormKind(str, Enum):
    """How a normalization module scales its input (``g`` its weight)."""

    RMS = "rms"
    """``x / rms(x) * g``."""
    RMS_OFFSET = "rms_offset"
    """``x / rms(x) * (1 + g)`` (Gemma: weights stored as offsets from 1)."""
    LAYER = "layer"
    """``(x - mean(x)) / std(x) * g + b``."""

    def gain(self, weight: np.ndarray) -> np.ndarray:
        """The per-channel multiplier of the normalized vector: ``g`` or ``1 + g``."""
        return 1.0 + weight if self is NormKind.RMS_OFFSET else weight


@dataclass(frozen=True)
class NormSpec:
    """A normalization module: its path (below the block, or below ``base_model`` for the
    final norm) and its :class:`NormKind`."""

    module: str
    kind: NormKind


class QkvLayout(str, Enum):
    """How the rows of a fused q/k/v projection (HF ``(out, in)`` layout) are ordered.

    ``H`` query heads, ``G`` key/value heads, ``hd`` the head width.
    """

    SEPARATE = "separate"
    """Three matrices q, k, v (no fused tensor)."""
    CONTIGUOUS = "contiguous"
    """``[q (H*hd) | k (G*hd) | v (G*hd)]`` (Phi-3, Falcon multi-query, GPT-2 after transposing)."""
    PER_HEAD = "per_head"
    """``(H, 3, hd)``: each head's q, k, v rows together (GPT-NeoX, Falcon multi-head)."""
    GROUPED = "grouped"
    """``(G, H/G + 2, hd)``: per key/value head, its query heads then k then v (Falcon's new
    decoder architecture)."""


class QkNorm(str, Enum):
    """Where a q/k normalization (applied to q and k before the scores) has its weight."""

    PER_HEAD = "per_head"
    """One ``(hd,)`` weight shared by all heads (Qwen3, Gemma-3)."""
    FULL_WIDTH = "full_width"
    """One ``(H*hd,)`` weight over all heads at once (OLMo-2): head ``h`` uses its slice."""


@dataclass(frozen=True)
class HeadKeys:
    """Config keys of the head geometry, first present wins (a family's own names)."""

    n_heads: tuple[str, ...] = ("num_attention_heads", "n_head")
    n_kv_heads: tuple[str, ...] = ("num_key_value_heads",)
    head_dim: tuple[str, ...] = ("head_dim",)
    d_model: tuple[str, ...] = ("hidden_size", "n_embd")


@dataclass(frozen=True)
class AttentionSpec:
    """The attention of a family.

    Attributes:
        qkv: how a fused projection splits (:attr:`QkvLayout.SEPARATE` for q, k, v matrices).
        keys: the config keys of the head counts.
        kv_heads: a family rule for the key/value head count (Falcon) instead of ``keys``.
        qk_norm: q/k normalization applied before the scores (``None``: none); its weights
            have roles ``q_norm`` / ``k_norm``.
        qk_norm_kind: its :class:`NormKind`.
    """

    qkv: QkvLayout = QkvLayout.SEPARATE
    keys: HeadKeys = HeadKeys()
    kv_heads: Callable[[Any], int | None] | None = None
    qk_norm: QkNorm | None = None
    qk_norm_kind: NormKind = NormKind.RMS


@dataclass(frozen=True)
class MoESpec:
    """A mixture-of-experts MLP.

    Attributes:
        router: path below the block of the router module of a loaded model; its output (or
            the first element of its output tuple) is ``(tokens, n_experts)`` router logits.
        n_experts, top_k: config keys of the number of experts and of experts per token.
    """

    router: str
    n_experts: tuple[str, ...]
    top_k: tuple[str, ...] = ("num_experts_per_tok",)


@dataclass(frozen=True)
class Readout:
    """The final norm and unembedding: logits = scale * softcap(unembed(final_norm(resid))).

    Attributes:
        final_norm: path below ``base_model`` (``None``: the blocks end normalized, BERT).
        unembed: candidate paths below the top-level model, first present wins.
        softcap: config key of ``final_logit_softcapping`` (``cap * tanh(logits / cap)``).
        scale: config key of a logit multiplier (``logits * scale``).
    """

    final_norm: str | None
    unembed: tuple[str, ...] = ("lm_head",)
    softcap: str | None = None
    scale: str | None = None


@dataclass(frozen=True)
class GgufNames:
    """llama.cpp names of a family: ``blk.N.<block key>`` and global tensors, -> HF names.

    Attributes:
        block: llama.cpp block tensor stem -> HF path below the block (``attn_q`` ->
            ``self_attn.q_proj``).
        globals: llama.cpp global tensor name -> HF name.
        prefix: the HF prefix of blocks (``model.layers``).
        rotary_permuted: llama.cpp's converter permuted the q/k rows (arch ``llama``).
    """

    block: Mapping[str, str]
    globals: Mapping[str, str]
    prefix: str = "model.layers"
    rotary_permuted: bool = False


class Capability(str, Enum):
    """What a spec can be asked for; a spec may refuse some, with a reason."""

    WEIGHTS = "weights"
    """Weight roles (always: unknown matrices are ``other``)."""
    HEADS = "heads"
    """Per-head q/k/v/o and QK/OV circuit spectra."""
    SITES = "sites"
    """TransformerLens sites (run_with_cache, hooks, activations, patching)."""
    ATTENTION = "attention"
    """Attention sites (``hook_z``, ``hook_pattern``): head scores, head ablation and patching."""
    LENS = "lens"
    """The final norm + unembedding: logit lens."""
    RESUME = "resume"
    """Resuming the forward pass at layer L from ``hook_resid_pre`` (ablation sweeps)."""
    MOE = "moe"
    """Per-expert weight spectra and routing statistics."""


@dataclass(frozen=True)
class WeightPattern:
    """A tensor name pattern and the role of the tensors it matches.

    Attributes:
        pattern: regular expression; block patterns must match the whole name below the
            block (``self_attn\\.q_proj\\.weight``), global patterns are searched in the
            whole name. A group named ``expert`` gives the expert index.
        role: see :data:`spectrascope.arch.roles.ROLES` (``other`` declares a known tensor
            that has no role, e.g. position embeddings).
        transposed: stored ``(in, out)`` (GPT-2 ``Conv1D``) instead of HF Linear's ``(out, in)``.
        stacked: a 3-D ``(n_experts, out, in)`` tensor: one matrix per expert.
    """

    pattern: str
    role: str
    transposed: bool = False
    stacked: bool = False


@dataclass(frozen=True)
class ArchSpec:
    """One family, resolved for one config. See the module docstring.

    Attributes:
        name: the family name (``llama``, ``gemma2`` ...), used in messages and tables.
        block: :class:`BlockKind`.
        layers: dotted path of the ``ModuleList`` of blocks below ``base_model``.
        points: where each site kind lives inside a block (kinds absent here do not exist).
        weights: block-relative :class:`WeightPattern` s.
        globals: whole-name patterns (embeddings, heads, declared ``other`` tensors).
        attention: :class:`AttentionSpec`, or ``None`` for a model without attention.
        readers: reader role -> the norm whose output it reads (``None``: the raw residual).
        readout: :class:`Readout`, or ``None``.
        moe: :class:`MoESpec` for a mixture-of-experts MLP.
        gguf: :class:`GgufNames` when llama.cpp files of the family are read.
        resumable: HF's forward run with ``inputs_embeds`` = ``blocks.L.hook_resid_pre`` over
            the blocks ``L..`` equals the full forward (nothing but the embedding module sits
            between ``inputs_embeds`` and the blocks).
        causal: tokens attend only to earlier tokens.
        embed_scale: what the embedding module multiplies token embeddings by (``None``: 1;
            Gemma: ``sqrt(d_model)``; transformers 5 applies it inside ``embed_tokens``, so
            ``hook_resid_pre`` of block 0 holds the scaled embeddings).
        n_layers_keys: config keys of the block count.
        refused: capability -> one-line reason, for what this config cannot do.
        handled: config attributes that change the forward and how the spec handles them
            (documentation for the capability table).
    """

    name: str
    block: BlockKind
    layers: str
    points: Mapping[SiteKind, SitePoint]
    weights: tuple[WeightPattern, ...]
    globals: tuple[WeightPattern, ...] = ()
    attention: AttentionSpec | None = AttentionSpec()
    readers: Mapping[str, NormSpec | None] = field(default_factory=dict)
    readout: Readout | None = None
    moe: MoESpec | None = None
    gguf: GgufNames | None = None
    resumable: bool = False
    causal: bool = True
    embed_scale: str | None = None
    n_layers_keys: tuple[str, ...] = ("num_hidden_layers", "n_layer")
    refused: Mapping[Capability, str] = field(default_factory=dict)
    handled: tuple[str, ...] = ()

    def supports(self, capability: Capability) -> bool:
        """Whether this spec (for its config) provides ``capability``."""
        return capability not in self.refused

    def require(self, capability: Capability, what: str = "") -> None:
        """Raise :class:`ArchitectureError` (one line) unless ``capability`` is provided."""
        if capability in self.refused:
            needs = f"{what} needs {capability.value}: " if what else ""
            raise ArchitectureError(f"{needs}{self.refused[capability]}")

    def refusing(self, reasons: Mapping[Capability, str]) -> ArchSpec:
        """A copy that also refuses ``reasons`` (used by family resolvers)."""
        return replace(self, refused={**self.refused, **reasons})


def config_get(config: Any, keys: str | tuple[str, ...], default: Any = None) -> Any:
    """The first of ``keys`` present (and not None) in a config dict or config object."""
    for key in (keys,) if isinstance(keys, str) else keys:
        value = config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)
        if value is not None:
            return value
    return default


def model_type_of(config: Any) -> str:
    """``config.model_type`` of a config dict or object (``""`` when missing)."""
    return str(config_get(config, "model_type", "") or "").lower()
