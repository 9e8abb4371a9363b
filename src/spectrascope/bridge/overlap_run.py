"""Run the eigenmode-overlap analysis on a loaded model over domain corpora."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..activations.batching import token_batches
from ..corpora import corpus_texts
from ..models.roles import tensor_role
from ..progress import progress_bar
from .matrix_inputs import SHARED_INPUT, accumulate_input_moments
from .norm_folding import fold_norm, reader_norm
from .overlap import mode_shares, mode_table, overlap_rows
from .subspaces import MatrixSubspaces, matrix_subspaces

OVERLAP_ROLES = ("q", "k", "v", "o", "mlp_gate", "mlp_up", "mlp_down", "mlp_in", "mlp_out")


def model_roles(hf_model) -> dict[str, tuple[int, str]]:
    """Weight name -> (block, role) for every 2-D parameter of a HF model."""
    config = hf_model.config.to_dict()
    return {n: tensor_role(n, config) for n, p in hf_model.named_parameters() if p.dim() == 2}


def model_subspaces(hf_model, roles: dict[str, tuple[int, str]], wanted=OVERLAP_ROLES,
                    fold_reader_norms: bool = False) -> dict[str, MatrixSubspaces]:
    """SVD and tails of every matrix with a role in ``wanted`` (GPT-2 Conv1D weights transposed).

    With ``fold_reader_norms`` the readers (q, k, v, gate, up) are analyzed in residual-stream
    coordinates, their norm's gain folded in (:mod:`~spectrascope.bridge.norm_folding`): what
    cross-layer alignment compares with the writers' output directions. The eigenmode overlap
    uses the raw matrices, whose inputs are the normalized vectors themselves.
    """
    params = dict(hf_model.named_parameters())
    conv1d = hf_model.config.model_type == "gpt2"
    out = {}
    for name, (_, role) in roles.items():
        if role in wanted:
            W = params[name].detach().double().cpu().numpy()
            W = W.T if conv1d else W
            norm = reader_norm(hf_model, name, role) if fold_reader_norms else None
            out[name] = matrix_subspaces(fold_norm(W, norm) if norm is not None else W)
    return out


def run_overlap(loaded, corpora: str, max_tokens: int = 1024, seq_len: int = 128, layers: list[int] | None = None,
                show_progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, MatrixSubspaces]]:
    """Eigenmode overlap of each domain with each matrix's tail / ERG tail / bulk.

    Returns:
        (overlap table: name, block, role, domain, part, k, d_in, share, random_share, enrichment;
         mode table: name, mode, <domain shares...>, top_domain, specificity;
         the subspaces, for reuse by alignment)
    """
    roles = model_roles(loaded.hf)
    if layers is not None:
        roles = {n: r for n, r in roles.items() if r[0] in layers}
    subs = model_subspaces(loaded.hf, roles)
    by_role = {(roles[n][0], roles[n][1]): n for n in subs}
    source = {n: by_role.get((roles[n][0], SHARED_INPUT.get(roles[n][1], roles[n][1])), n) for n in subs}
    readers: dict[str, list[str]] = {}
    for n in subs:
        readers.setdefault(source[n], []).append(n)
    domains = corpus_texts(corpora)
    rows: list[dict] = []
    shares: dict[str, dict[str, np.ndarray]] = {n: {} for n in subs}
    with progress_bar("eigenmode overlap", total=len(domains), enabled=show_progress) as advance:
        for corpus in domains:  # one domain's moments in memory at a time
            batches = token_batches(loaded.tokenizer, corpus.texts, max_tokens, seq_len)
            moments = accumulate_input_moments(loaded.hf, sorted(readers), batches)
            by_matrix: dict[str, list[dict]] = {}
            for src in sorted(readers):  # one covariance at a time; each accumulator freed after use
                C = moments.pop(src).covariance(ddof=1).double().cpu().numpy()
                for n in readers[src]:
                    block, role = roles[n]
                    by_matrix[n] = [{**r, "block": block, "role": role} for r in overlap_rows(n, subs[n], {corpus.name: C})]
                    shares[n][corpus.name] = mode_shares(subs[n], C)
                del C
            rows += [r for n in subs for r in by_matrix[n]]
            advance(1)
    modes = [mode_table(n, shares[n]) for n in subs]
    overlap = pd.DataFrame(rows)
    overlap = overlap[["name", "block", "role"] + [c for c in overlap.columns if c not in ("name", "block", "role")]]
    return overlap, pd.concat(modes, ignore_index=True), subs
