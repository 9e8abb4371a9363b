"""Building blocks the family files share: the Llama-style module names, sites and readers.

A family file composes these into its :class:`~spectrascope.arch.spec.ArchSpec`; nothing here
is a family by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from spectrascope.arch.site_kinds import SiteKind
from spectrascope.arch.spec import (
    ArchSpec,
    Io,
    NormKind,
    NormSpec,
    SitePoint,
    WeightPattern,
)

IN, OUT = Io.INPUT, Io.OUTPUT
K = SiteKind


def points(**by_kind: SitePoint) -> dict[SiteKind, SitePoint]:
    """Site points keyed by :class:`SiteKind`, from keywords named like its members (lower case)."""
    return {SiteKind[name.upper()]: point for name, point in by_kind.items()}


def wp(pattern: str, role: str, **flags: bool) -> WeightPattern:
    """A :class:`WeightPattern` (shorthand)."""
    return WeightPattern(pattern, role, **flags)


LLAMA_ATTENTION = (
    wp(r"self_attn\.q_proj\.weight", "q"),
    wp(r"self_attn\.k_proj\.weight", "k"),
    wp(r"self_attn\.v_proj\.weight", "v"),
    wp(r"self_attn\.o_proj\.weight", "o"),
)
"""Separate q/k/v/o projections under ``self_attn`` (Llama and most decoders)."""

QK_NORMS = (wp(r"self_attn\.q_norm\.weight", "q_norm"), wp(r"self_attn\.k_norm\.weight", "k_norm"))
"""q/k normalization weights (Qwen3, Gemma-3, OLMo-2)."""

GATED_MLP = (
    wp(r"mlp\.gate_proj\.weight", "mlp_gate"),
    wp(r"mlp\.up_proj\.weight", "mlp_up"),
    wp(r"mlp\.down_proj\.weight", "mlp_down"),
)
"""A gated MLP ``down(act(gate(x)) * up(x))`` under ``mlp``."""

STACKED_EXPERTS = (
    wp(r"mlp\.experts\.gate_up_proj", "mlp_gate_up", stacked=True),
    wp(r"mlp\.experts\.down_proj", "mlp_down", stacked=True),
)
"""transformers 5 expert modules: ``(E, 2 d_ff, d)`` gate-up and ``(E, d, d_ff)`` down parameters."""


def without(base: Mapping[SiteKind, SitePoint], *kinds: SiteKind) -> dict[SiteKind, SitePoint]:
    """``base`` minus ``kinds`` (e.g. no ``mlp.hook_post`` for a mixture of experts)."""
    return {kind: point for kind, point in base.items() if kind not in kinds}


def with_points(base: Mapping[SiteKind, SitePoint], **changes: SitePoint) -> dict[SiteKind, SitePoint]:
    """``base`` with some kinds moved (keywords as in :func:`points`), in forward order."""
    merged = {**base, **points(**changes)}
    return {kind: merged[kind] for kind in SiteKind if kind in merged}


def block_points(
    attention: str, output: str, mlp_down: str | None, resid_mid: str | None, mlp: str = "mlp"
) -> dict[SiteKind, SitePoint]:
    """The sites of a block whose attention module returns ``(output, probabilities)``.

    Args:
        attention: path of the attention module (``hook_attn_out``: its first output,
            ``hook_pattern``: its second).
        output: path of its output projection (``hook_z``: its input).
        mlp_down: path of the MLP's last matrix (``mlp.hook_post``: its input; None: no such site).
        resid_mid: path of the module whose input is the residual between the sub-blocks
            (edited in place; None: a parallel block).
        mlp: path of the MLP module (``hook_mlp_out``: its output).
    """
    optional = {}
    if resid_mid is not None:
        optional["resid_mid"] = SitePoint(resid_mid, IN, in_place=True)
    if mlp_down is not None:
        optional["mlp_post"] = SitePoint(mlp_down, IN)
    return with_points(
        points(
            resid_pre=SitePoint("", IN),
            z=SitePoint(output, IN),
            pattern=SitePoint(attention, OUT, index=1),
            attn_out=SitePoint(attention, OUT, index=0),
            mlp_out=SitePoint(mlp, OUT),
            resid_post=SitePoint("", OUT),
        ),
        **optional,
    )


def fixed(spec: ArchSpec) -> Callable[[Any], ArchSpec]:
    """The resolver of a family whose config attributes never change its spec."""

    def resolve(config: Any) -> ArchSpec:
        del config
        return spec

    return resolve


PRE_NORM_POINTS = block_points("self_attn", "self_attn.o_proj", "mlp.down_proj", "post_attention_layernorm")
"""A pre-norm Llama-style block: ``self_attn`` (``o_proj``), ``post_attention_layernorm``
before the MLP, ``mlp`` (``down_proj``)."""


def readers(
    attn: NormSpec | None,
    mlp: NormSpec | None,
    *,
    attn_roles: tuple[str, ...] = ("q", "k", "v", "qkv"),
    mlp_roles: tuple[str, ...] = ("mlp_gate", "mlp_up", "mlp_gate_up", "mlp_in", "router"),
) -> dict[str, NormSpec | None]:
    """Reader role -> the norm whose output it reads (``None``: the raw residual stream)."""
    return {**{role: attn for role in attn_roles}, **{role: mlp for role in mlp_roles}}


def rms(module: str) -> NormSpec:
    return NormSpec(module, NormKind.RMS)


def layer_norm(module: str) -> NormSpec:
    return NormSpec(module, NormKind.LAYER)


LLAMA_READERS = readers(rms("input_layernorm"), rms("post_attention_layernorm"))
"""Llama: q/k/v read ``input_layernorm``, the MLP (and a router) ``post_attention_layernorm``."""

LLAMA_GGUF_BLOCK = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
"""llama.cpp block tensor stems of the Llama layout -> HF paths below ``model.layers.N``."""

LLAMA_GGUF_GLOBALS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output.weight": "lm_head.weight",
    "output_norm.weight": "model.norm.weight",
}
"""llama.cpp global tensors of the Llama layout -> HF names."""
