"""The copying score of every head of a checkpoint (:func:`spectrascope.spectra.copying.copying_score`
of each head's OV circuit, norm gains folded in), read one block at a time from a tensor source.

Llama family (HF tensor names; GGUF names are mapped to them by the sources); other families
get no score (an empty table, a NaN column).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..models.roles import HeadGeometry, family, head_geometry
from ..spectra.copying import copying_score

COPYING_COLUMNS = ["block", "head", "copying"]


def copying_table(source) -> pd.DataFrame:
    """:data:`COPYING_COLUMNS`, one row per (block, query head), from a tensor source
    (:func:`spectrascope.models.open_source.open_source`); empty for non-Llama models."""
    config = source.config()
    geometry = head_geometry(config)
    if family(config) != "llama" or geometry is None:
        return pd.DataFrame(columns=COPYING_COLUMNS)
    names = {info.name for info in source.tensors()}
    embed = source.load("model.embed_tokens.weight").astype(np.float64)
    unembed = source.load("lm_head.weight").astype(np.float64) if "lm_head.weight" in names else embed
    final_gain = _gain(source, names, "model.norm.weight", geometry.d_model)
    embed_unembed = embed.T @ (unembed * final_gain[None, :])  # (d, d)
    rows = []
    n_layers = int(config.get("num_hidden_layers", 0))
    for block in range(n_layers):
        prefix = f"model.layers.{block}"
        if f"{prefix}.self_attn.v_proj.weight" not in names:
            continue
        rows.extend(_block_rows(source, names, prefix, block, geometry, embed_unembed))
    return pd.DataFrame(rows, columns=COPYING_COLUMNS)


def _gain(source, names: set[str], name: str, d_model: int) -> np.ndarray:
    """A norm's gain vector, or ones when the model has none of that name."""
    return source.load(name).astype(np.float64) if name in names else np.ones(d_model)


def _block_rows(
    source, names: set[str], prefix: str, block: int, geometry: HeadGeometry, embed_unembed: np.ndarray
) -> list[dict]:
    hd = geometry.head_dim
    gain = _gain(source, names, f"{prefix}.input_layernorm.weight", geometry.d_model)
    v = source.load(f"{prefix}.self_attn.v_proj.weight") * gain[None, :]
    o = source.load(f"{prefix}.self_attn.o_proj.weight")
    rows = []
    for head in range(geometry.n_heads):
        g = head // geometry.group_size
        score = copying_score(v[g * hd : (g + 1) * hd], o[:, head * hd : (head + 1) * hd], embed_unembed)
        rows.append({"block": block, "head": head, "copying": score})
    return rows


def add_copying_column(heads: pd.DataFrame, source) -> pd.DataFrame:
    """``heads`` (the per-head table) with a ``copying`` column, filled on its ``ov`` rows."""
    if heads is None or heads.empty:
        return heads
    scores = copying_table(source)
    ov = pd.DataFrame({"block": scores["block"], "head": scores["head"], "circuit": "ov", "copying": scores["copying"]})
    merged = heads.merge(ov, on=["block", "head", "circuit"], how="left")
    merged.index = heads.index
    return merged
