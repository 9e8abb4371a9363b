"""Short labels of ablation components for the report's axes and sentences."""

from __future__ import annotations

_SPECTRAL_EDITS = {"tail": "tail only", "bulk": "bulk only (tail removed)"}


def edit_label(component: str) -> str:
    """A short axis label for an ablation component name.

    'spectral:model.layers.0.mlp.down_proj.weight:bulk' -> 'L0 mlp.down_proj: bulk only (tail removed)',
    'spectral:...:drop_top:8' -> 'L0 ...: top 8 removed', 'attn:3' -> 'L3 attention', 'mlp:3' -> 'L3 MLP';
    anything else unchanged.
    """
    kind, _, rest = component.partition(":")
    if kind in ("attn", "mlp") and rest.isdigit():
        return f"L{rest} {'attention' if kind == 'attn' else 'MLP'}"
    if kind != "spectral":
        return component
    name, _, edit = rest.partition(":")
    parts = name.removesuffix(".weight").split(".")
    layer = next(
        (parts[i + 1] for i, p in enumerate(parts[:-1]) if p in ("layers", "h", "layer") and parts[i + 1].isdigit()),
        None,
    )
    matrix = ".".join(parts[-2:])
    edit = f"top {edit.split(':')[1]} removed" if edit.startswith("drop_top:") else _SPECTRAL_EDITS.get(edit, edit)
    return f"{'L' + layer + ' ' if layer is not None else ''}{matrix}: {edit}"
