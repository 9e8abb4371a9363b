"""Attention head geometry, read from a config under its family's own key names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spectrascope.arch.spec import AttentionSpec, HeadKeys, config_get


@dataclass(frozen=True)
class HeadGeometry:
    """Attention head shapes: n_heads query heads, n_kv_heads key/value heads (GQA)."""

    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_model: int

    @property
    def group_size(self) -> int:
        """Query heads per key/value head."""
        return self.n_heads // self.n_kv_heads


def read_geometry(config: Any, attention: AttentionSpec | None = None) -> HeadGeometry | None:
    """Head geometry of ``config`` under ``attention``'s keys (default keys when None).

    ``head_dim`` is the config's explicit value when it has one, else ``d_model // n_heads``;
    key/value heads default to the query heads (multi-head attention). None when the config
    gives no head count or width.
    """
    keys = attention.keys if attention is not None else HeadKeys()
    n_heads = config_get(config, keys.n_heads)
    d_model = config_get(config, keys.d_model)
    if not n_heads or not d_model:
        return None
    rule = attention.kv_heads if attention is not None else None
    n_kv = rule(config) if rule is not None else config_get(config, keys.n_kv_heads)
    head_dim = config_get(config, keys.head_dim) or int(d_model) // int(n_heads)
    return HeadGeometry(int(n_heads), int(n_kv or n_heads), int(head_dim), int(d_model))
