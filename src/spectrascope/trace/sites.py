"""Site names: the TransformerLens vocabulary, parsed and expanded.

A *site* is one named activation inside a transformer block, written
``blocks.{L}.{kind}`` with ``L`` the 0-based layer index and ``kind`` one of the
:class:`SiteKind` values (``hook_resid_pre``, ``attn.hook_z`` ...). This module knows
names only; which tensor of which Hugging Face module a site is lives in
:mod:`spectrascope.trace.architectures`.

A request for sites may use, besides full names:

- ``blocks.*.{kind}``: that kind in every layer;
- a short form meaning that kind in every layer: the kind itself (``hook_resid_post``,
  ``attn.hook_z``), without ``hook_`` (``resid_post``, ``attn_out``, ``attn.z``), or
  the last component alone (``hook_z``, ``z``, ``hook_pattern``, ``pattern``,
  ``hook_post``, ``mlp_post``). The full list is :data:`SHORT_FORMS`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from spectrascope.arch.site_kinds import SiteKind
from spectrascope.errors import SiteError

__all__ = ["SHORT_FORMS", "SiteKind", "all_site_names", "expand_sites", "parse_site", "site_name"]

SHORT_FORMS: dict[str, SiteKind] = {
    "resid_pre": SiteKind.RESID_PRE,
    "hook_resid_pre": SiteKind.RESID_PRE,
    "resid_mid": SiteKind.RESID_MID,
    "hook_resid_mid": SiteKind.RESID_MID,
    "resid_post": SiteKind.RESID_POST,
    "hook_resid_post": SiteKind.RESID_POST,
    "attn_out": SiteKind.ATTN_OUT,
    "hook_attn_out": SiteKind.ATTN_OUT,
    "mlp_out": SiteKind.MLP_OUT,
    "hook_mlp_out": SiteKind.MLP_OUT,
    "attn.hook_z": SiteKind.Z,
    "attn.z": SiteKind.Z,
    "hook_z": SiteKind.Z,
    "z": SiteKind.Z,
    "attn.hook_pattern": SiteKind.PATTERN,
    "attn.pattern": SiteKind.PATTERN,
    "hook_pattern": SiteKind.PATTERN,
    "pattern": SiteKind.PATTERN,
    "mlp.hook_post": SiteKind.MLP_POST,
    "mlp.post": SiteKind.MLP_POST,
    "hook_post": SiteKind.MLP_POST,
    "mlp_post": SiteKind.MLP_POST,
}
"""Short form -> kind; a short form means that kind in every layer."""

_FULL_NAME = re.compile(r"^blocks\.(\d+|\*)\.(.+)$")


def site_name(layer: int, kind: SiteKind) -> str:
    """The full name of ``kind`` in block ``layer``, e.g. ``blocks.3.hook_resid_post``."""
    return f"blocks.{layer}.{kind.value}"


def parse_site(name: str) -> tuple[int, SiteKind]:
    """Split a full site name into (layer, kind); :class:`SiteError` if it is not one."""
    match = _FULL_NAME.match(name)
    if match is None or match.group(1) == "*":
        raise SiteError(f"not a full site name: {name!r}; {_valid_patterns()}")
    kind = _kind_of(match.group(2), name)
    return int(match.group(1)), kind


def all_site_names(n_layers: int, kinds: Iterable[SiteKind]) -> list[str]:
    """Every site of ``kinds`` in ``n_layers`` blocks, layer by layer in forward order."""
    ordered = [kind for kind in SiteKind if kind in set(kinds)]
    return [site_name(layer, kind) for layer in range(n_layers) for kind in ordered]


def expand_sites(requested: str | Iterable[str] | None, n_layers: int, kinds: Iterable[SiteKind]) -> list[str]:
    """Full site names for a request (full names, ``blocks.*.`` wildcards, short forms).

    ``None`` means every site of ``kinds``. The result keeps the request's order, has no
    duplicates, and contains only layers ``0 .. n_layers - 1`` and the given ``kinds``
    (the kinds the model can provide); anything else raises :class:`SiteError`.
    """
    available = [kind for kind in SiteKind if kind in set(kinds)]
    if requested is None:
        return all_site_names(n_layers, available)
    if isinstance(requested, str):
        requested = [requested]
    names: list[str] = []
    for request in requested:
        for layer, kind in _expand_one(request, n_layers):
            if kind not in available:
                raise SiteError(
                    f"site {request!r} ({kind.value}) is not available on this model; "
                    f"available kinds: {', '.join(k.value for k in available)}"
                )
            names.append(site_name(layer, kind))
    return list(dict.fromkeys(names))


def _expand_one(request: str, n_layers: int) -> list[tuple[int, SiteKind]]:
    if request in SHORT_FORMS:
        return [(layer, SHORT_FORMS[request]) for layer in range(n_layers)]
    match = _FULL_NAME.match(request)
    if match is None:
        raise SiteError(f"unknown site {request!r}; {_valid_patterns()}")
    kind = _kind_of(match.group(2), request)
    if match.group(1) == "*":
        return [(layer, kind) for layer in range(n_layers)]
    layer = int(match.group(1))
    if layer >= n_layers:
        raise SiteError(f"site {request!r}: layer {layer} does not exist (the model has layers 0..{n_layers - 1})")
    return [(layer, kind)]


def _kind_of(suffix: str, name: str) -> SiteKind:
    try:
        return SiteKind(suffix)
    except ValueError:
        raise SiteError(f"unknown site {name!r}; {_valid_patterns()}") from None


def _valid_patterns() -> str:
    kinds = ", ".join(f"blocks.{{L}}.{kind.value}" for kind in SiteKind)
    return f"valid sites: {kinds} (L a layer index or *), or a short form such as resid_post, attn_out, hook_z"


def vector_site_kind(kind: str | SiteKind) -> SiteKind:
    """The :class:`SiteKind` of a kind name (``hook_resid_post``), a short form (``resid_post``,
    ``z`` ...) or a kind; only kinds with one vector per token (``attn.hook_z`` as H x d_head).

    Raises:
        SiteError: an unknown kind, or ``attn.hook_pattern`` (attention probabilities are not
            token vectors and are observe-only).
    """
    if isinstance(kind, SiteKind):
        resolved = kind
    elif kind in SHORT_FORMS:
        resolved = SHORT_FORMS[kind]
    else:
        try:
            resolved = SiteKind(kind)
        except ValueError:
            names = ", ".join(
                sorted({k for k, v in SHORT_FORMS.items() if v is not SiteKind.PATTERN and "hook" not in k})
            )
            raise SiteError(f"unknown site kind {kind!r}; use one of: {names}") from None
    if resolved is SiteKind.PATTERN:
        raise SiteError(
            "attention patterns (attn.hook_pattern) are not token vectors and are observe-only; "
            "use resid_post, attn_out, mlp_out, z ..."
        )
    return resolved
