"""Run the eigenmode-overlap analysis on a loaded model over domain corpora."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..activations.batching import token_batches
from ..arch import weight_role
from ..corpora import corpus_texts
from ..models.handle import ModelLike, as_model
from ..progress import progress_bar
from .matrix_inputs import SHARED_INPUT, accumulate_input_moments
from .overlap import mode_shares, mode_table, overlap_rows
from .subspaces import MatrixSubspaces, matrix_subspaces

OVERLAP_ROLES = ("q", "k", "v", "o", "mlp_gate", "mlp_up", "mlp_down", "mlp_in", "mlp_out")


def model_roles(model: ModelLike) -> dict[str, tuple[int, str]]:
    """Weight name -> (block, role) for every 2-D parameter of a model (roles from its family spec)."""
    handle = as_model(model)
    spec = handle.spec if handle.has_spec else None
    roles = {n: weight_role(n, spec) for n, p in handle.hf.named_parameters() if p.dim() == 2}
    return {n: (r.block, r.role) for n, r in roles.items()}


def model_subspaces(model: ModelLike, roles: dict[str, tuple[int, str]], wanted=OVERLAP_ROLES) -> dict[str, MatrixSubspaces]:
    """SVD and tails of every matrix with a role in ``wanted``, in HF Linear layout (out, in):
    weights the family stores transposed (GPT-2's Conv1D) are transposed back."""
    handle = as_model(model)
    spec = handle.spec if handle.has_spec else None
    params = dict(handle.hf.named_parameters())
    out = {}
    for name, (_, role) in roles.items():
        if role in wanted:
            W = params[name].detach().double().cpu().numpy()
            out[name] = matrix_subspaces(W.T if weight_role(name, spec).transposed else W)
    return out


def run_overlap(loaded: ModelLike, corpora: str, max_tokens: int = 1024, seq_len: int = 128, layers: list[int] | None = None,
                show_progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, MatrixSubspaces]]:
    """Eigenmode overlap of each domain with each matrix's tail / ERG tail / bulk.

    Returns:
        (overlap table: name, block, role, domain, part, k, d_in, share, random_share, enrichment;
         mode table: name, mode, <domain shares...>, top_domain, specificity;
         the subspaces, for reuse by alignment)
    """
    loaded = as_model(loaded)
    roles = model_roles(loaded)
    if layers is not None:
        roles = {n: r for n, r in roles.items() if r[0] in layers}
    subs = model_subspaces(loaded, roles)
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
