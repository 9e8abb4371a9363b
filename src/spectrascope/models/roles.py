"""Weight roles and head geometry of a config: the registry's answers (:mod:`spectrascope.arch`).

Kept as the weights side's small entry point: :func:`tensor_role` (block, role),
:func:`family`, :func:`head_geometry`. The roles themselves are defined in
:mod:`spectrascope.arch.roles`; an unknown architecture still gets every matrix analyzed,
with role ``other`` and the block index read from the name when it has one.
"""

from __future__ import annotations

from typing import Any

from spectrascope.arch import ROLES, HeadGeometry, find_spec, head_geometry, weight_role

__all__ = ["ROLES", "HeadGeometry", "family", "head_geometry", "tensor_role"]


def family(config: Any) -> str | None:
    """The family name of a HF config (dict or object), or None if unsupported."""
    spec = find_spec(config)
    return None if spec is None else spec.name


def tensor_role(name: str, config: Any) -> tuple[int, str]:
    """(block index or -1, role) of a tensor given its HF name and the model config."""
    role = weight_role(name, find_spec(config))
    return role.block, role.role
