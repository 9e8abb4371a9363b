"""The eigenmode-overlap analysis of a loaded model: which matrices, which inputs, which tables.

Every matrix with a role in :data:`OVERLAP_ROLES` is decomposed once (:mod:`.subspaces`); the
inputs it reads are hooked once per shared input (q, k and v read one tensor; gate and up
another) and fed to :class:`~spectrascope.bridge.input_shares.InputShares` during the
activation pass over each domain, which gives per-text sums and hence intervals over texts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..arch import weight_role
from ..models.handle import ModelLike, as_model
from .input_shares import InputShares
from .matrix_inputs import SHARED_INPUT, module_of
from .norm_folding import fold_norm, reader_norm
from .overlap import mode_table
from .subspaces import MatrixSubspaces, matrix_subspaces

OVERLAP_ROLES = ("q", "k", "v", "o", "mlp_gate", "mlp_up", "mlp_down", "mlp_in", "mlp_out")

OVERLAP_COLUMNS = [
    "name",
    "block",
    "role",
    "domain",
    "part",
    "variant",
    "k",
    "d_in",
    "n_tokens",
    "n_texts",
    "n_units",
    "share",
    "share_lo",
    "share_hi",
    "random_share",
    "enrichment",
    "enrichment_lo",
    "enrichment_hi",
]
"""Columns of the overlap table: one row per (matrix, domain, part, variant).

- ``part``: ``tail`` (power-law tail, the ECS), ``erg`` (SETOL's ERG tail), ``bulk``;
  ``variant``: ``raw`` or ``robust`` (massive/outlier input channels set to 0);
- ``k``: the part's number of singular directions; ``d_in``: the input width;
- ``share``: the fraction of the domain's input variance in the part's span, with a bootstrap
  interval over texts (``share_lo``, ``share_hi``); ``random_share`` = k / d_in, the expected
  share of a random k-dimensional subspace (the control); ``enrichment`` = share / random_share.
"""


def model_roles(model: ModelLike) -> dict[str, tuple[int, str]]:
    """Weight name -> (block, role) for every 2-D parameter of a model (roles from its family spec)."""
    handle = as_model(model)
    spec = handle.spec if handle.has_spec else None
    roles = {n: weight_role(n, spec) for n, p in handle.hf.named_parameters() if p.dim() == 2}
    return {n: (r.block, r.role) for n, r in roles.items()}


def model_subspaces(
    model: ModelLike,
    roles: dict[str, tuple[int, str]],
    wanted=OVERLAP_ROLES,
    fold_reader_norms: bool = False,
    left_roles=(),
) -> dict[str, MatrixSubspaces]:
    """SVD and tails of every matrix with a role in ``wanted``, in HF Linear layout (out, in):
    weights the family stores transposed (GPT-2's Conv1D) are transposed back.

    With ``fold_reader_norms`` the readers (q, k, v, gate, up) are analyzed in residual-stream
    coordinates, their norm's gain folded in (:mod:`~spectrascope.bridge.norm_folding`): what
    cross-layer alignment compares with the writers' output directions. The eigenmode overlap
    uses the raw matrices, whose inputs are the normalized vectors themselves. Output directions
    (U) are kept only for the roles in ``left_roles`` (the writers of the alignment).
    """
    handle = as_model(model)
    spec = handle.spec if handle.has_spec else None
    params = dict(handle.hf.named_parameters())
    out = {}
    for name, (_, role) in roles.items():
        if role in wanted:
            W = params[name].detach().double().cpu().numpy()
            W = W.T if weight_role(name, spec).transposed else W
            norm = reader_norm(handle.hf, name, role) if fold_reader_norms else None
            out[name] = matrix_subspaces(fold_norm(W, norm) if norm is not None else W, left=role in left_roles)
    return out


def input_sources(hf_model, roles: dict[str, tuple[int, str]], names) -> tuple[dict, dict[str, list[str]]]:
    """(input key -> module to hook, input key -> weight names reading it) for weights ``names``.

    Matrices that read one tensor (q, k, v; gate, up) share one key: the weight name of the
    matrix whose module is hooked."""
    by_role = {(roles[n][0], roles[n][1]): n for n in names}
    readers: dict[str, list[str]] = {}
    for n in names:
        block, role = roles[n]
        key = by_role.get((block, SHARED_INPUT.get(role, role)), n)
        readers.setdefault(key, []).append(n)
    return {key: module_of(hf_model, key) for key in readers}, readers


def overlap_collector(
    hf_model,
    roles: dict[str, tuple[int, str]],
    subspaces: dict[str, MatrixSubspaces],
    excluded: dict[str, np.ndarray] | None = None,
) -> InputShares:
    """The :class:`~spectrascope.bridge.input_shares.InputShares` collector for ``subspaces``."""
    modules, readers = input_sources(hf_model, roles, list(subspaces))
    return InputShares(modules, readers, subspaces, excluded or {})


def overlap_table(rows: list[dict], roles: dict[str, tuple[int, str]]) -> pd.DataFrame:
    """The :data:`OVERLAP_COLUMNS` table from the rows of every domain."""
    df = pd.DataFrame(rows)
    df.insert(1, "block", [roles[n][0] for n in df["name"]])
    df.insert(2, "role", [roles[n][1] for n in df["name"]])
    return df[OVERLAP_COLUMNS]


def modes_table(shares: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """Top-mode shares per domain (name -> domain -> (top,) shares) as one table (:func:`mode_table`)."""
    by_matrix: dict[str, dict[str, np.ndarray]] = {}
    for domain, per_matrix in shares.items():
        for name, values in per_matrix.items():
            by_matrix.setdefault(name, {})[domain] = values
    return pd.concat([mode_table(name, per_domain) for name, per_domain in by_matrix.items()], ignore_index=True)
