"""The family x capability table, generated from the registry (for the README and ``scripts/capability_table.py``).

One row per registered ``model_type``, resolved with its config's defaults:

==============  =======================================================================
``model_type``  ``config.model_type``
``family``      the spec's name
``block``       :class:`~spectrascope.arch.spec.BlockKind` (the residual identities)
``roles``       weight roles (always: unmatched tensors are ``other``)
``heads``       per-head q/k/v/o and QK/OV spectra (qkv layout in brackets when fused)
``sites``       TransformerLens site kinds provided (``resid_mid`` absent on parallel blocks)
``lens``        logit lens (final norm + unembedding, softcap / scale when the family has one)
``resume``      the forward resumes at a layer (fast ablation sweeps)
``moe``         per-expert spectra and routing statistics
``gguf``        llama.cpp files read under HF names
``handled``     config attributes that change the forward and how they are handled
==============  =======================================================================
"""

from __future__ import annotations

import pandas as pd

from spectrascope.arch.registry import REGISTRY, spec_for_model_type
from spectrascope.arch.spec import ArchSpec, Capability, QkvLayout

CAPABILITY_COLUMNS = [
    "model_type",
    "family",
    "block",
    "roles",
    "heads",
    "sites",
    "lens",
    "resume",
    "moe",
    "gguf",
    "handled",
]

_SHORT = {
    "hook_resid_pre": "resid_pre",
    "attn.hook_z": "z",
    "attn.hook_pattern": "pattern",
    "hook_attn_out": "attn_out",
    "hook_resid_mid": "resid_mid",
    "mlp.hook_post": "mlp_post",
    "hook_mlp_out": "mlp_out",
    "hook_resid_post": "resid_post",
}


def _yes(spec: ArchSpec, capability: Capability, detail: str = "") -> str:
    if not spec.supports(capability):
        return "no"
    return f"yes ({detail})" if detail else "yes"


def capability_row(model_type: str) -> dict[str, str]:
    """One row of :func:`capability_table`."""
    spec = spec_for_model_type(model_type)
    qkv = spec.attention.qkv if spec.attention is not None else None
    readout = spec.readout
    lens_detail = (
        ", ".join(x for x in (readout and readout.softcap and "softcap", readout and readout.scale and "scale") if x)
        if readout
        else ""
    )
    return {
        "model_type": model_type,
        "family": spec.name,
        "block": spec.block.value,
        "roles": "yes",
        "heads": _yes(spec, Capability.HEADS, qkv.value if qkv not in (None, QkvLayout.SEPARATE) else "")
        if spec.attention is not None
        else "no",
        "sites": ", ".join(_SHORT[kind.value] for kind in spec.points) if spec.supports(Capability.SITES) else "no",
        "lens": _yes(spec, Capability.LENS, lens_detail) if readout is not None else "no",
        "resume": "yes" if spec.resumable and spec.supports(Capability.RESUME) else "no",
        "moe": "yes" if spec.moe is not None else "",
        "gguf": ("yes (rotary un-permuted)" if spec.gguf.rotary_permuted else "yes") if spec.gguf is not None else "",
        "handled": "; ".join(spec.handled),
    }


def capability_table() -> pd.DataFrame:
    """Every registered ``model_type`` x capability (columns :data:`CAPABILITY_COLUMNS`)."""
    return pd.DataFrame([capability_row(t) for t in sorted(REGISTRY)], columns=CAPABILITY_COLUMNS)


def capability_markdown(table: pd.DataFrame | None = None) -> str:
    """The table as a Markdown table (for the README)."""
    table = capability_table() if table is None else table
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)
