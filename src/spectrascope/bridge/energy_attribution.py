"""Energy vs attribution: are the tokens a model treats as unusual the ones that drive it?

Per token i of a text:
    energy_first, energy_last  token energy (see activations.token_energy) at the first and
                               last layer's resid_post, against the pooled reference
    energy_change              energy_last - energy_first
    grad_x_input               gradient x input of the text's log-likelihood
                               f = sum_t log p(x_{t+1} | x_<=t) w.r.t. token i's input
                               embedding, summed over the embedding dimension
    integrated_gradients       the same path-integrated from a zero-embedding baseline
                               (midpoint rule in t with alpha = t^3, ``steps`` points,
                               dense near the baseline where pre-norm models change fast);
                               completeness:
                               sum_i IG_i ~= f(e) - f(0)
Agreement: Spearman rank correlations between energy_change and |attribution| (and
between the two attributions), with permutation p-values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..activations.energy_profile import text_energy
from ..activations.run import DEFAULT_CORPORA, _as_loaded
from ..errors import SpectrascopeError
from .correlation import permutation_test


def log_likelihood_from_embeddings(hf_model, embeds: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """f = sum over positions of log p(next token) for each row of embeds (b, T, d) -> (b,)."""
    logits = hf_model(inputs_embeds=embeds).logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    targets = input_ids[0, 1:].expand(embeds.shape[0], -1)
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(-1)


def attributions(hf_model, input_ids: torch.Tensor, steps: int = 32) -> tuple[np.ndarray, np.ndarray, float]:
    """(gradient x input (T,), integrated gradients (T,), f(e) - f(0)) for input_ids (1, T)."""
    if input_ids.shape[1] < 2:
        raise SpectrascopeError("attribution needs a text of at least two tokens")
    embed = hf_model.get_input_embeddings()(input_ids).detach()
    e = embed.clone().requires_grad_(True)
    f = log_likelihood_from_embeddings(hf_model, e, input_ids)
    (grad,) = torch.autograd.grad(f.sum(), e)
    gxi = (grad * embed).sum(-1)[0]
    # alpha = t^3 with midpoint t: dense near the baseline, where pre-norm models change fast
    t = (torch.arange(steps, dtype=embed.dtype) + 0.5) / steps
    alphas, weights = t**3, 3 * t**2 / steps
    path = (alphas.view(-1, 1, 1) * embed).requires_grad_(True)
    f_path = log_likelihood_from_embeddings(hf_model, path, input_ids)
    (g_path,) = torch.autograd.grad(f_path.sum(), path)
    ig = ((g_path * weights.view(-1, 1, 1)).sum(0, keepdim=True) * embed).sum(-1)[0]
    with torch.no_grad():
        f0 = log_likelihood_from_embeddings(hf_model, torch.zeros_like(embed), input_ids)
    return gxi.detach().numpy(), ig.detach().numpy(), float(f.item() - f0.item())


def energy_vs_attribution(model, text: str, corpora: str = DEFAULT_CORPORA, max_tokens: int = 2048,
                          steps: int = 32, seq_len: int = 128) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-token table, agreement table) for one text; see module docstring."""
    loaded = _as_loaded(model)
    energies = text_energy(loaded, text, "resid_post", corpora, max_tokens, seq_len)
    layers = sorted(energies["layer"].unique())
    first = energies[energies["layer"] == layers[0]].set_index("position")
    last = energies[energies["layer"] == layers[-1]].set_index("position")
    ids = loaded.tokenizer(text, return_tensors="pt", truncation=True, max_length=seq_len)["input_ids"]
    ids = ids.to(loaded.device)
    gxi, ig, delta_f = attributions(loaded.hf, ids, steps)
    tokens = pd.DataFrame({
        "position": np.arange(ids.shape[1]), "token": first["token"].to_numpy(),
        "energy_first": first["energy"].to_numpy(), "energy_last": last["energy"].to_numpy(),
        "grad_x_input": gxi, "integrated_gradients": ig,
    })
    tokens["energy_change"] = tokens["energy_last"] - tokens["energy_first"]
    pairs = [("energy_change", "grad_x_input"), ("energy_change", "integrated_gradients"),
             ("energy_last", "integrated_gradients"), ("grad_x_input", "integrated_gradients")]
    rows = []
    for a, b in pairs:
        x = tokens[a].to_numpy()
        y = tokens[b].to_numpy()
        y = y if a.startswith("grad") else np.abs(y)
        rho, p = permutation_test(x, y, n_perm=999)
        rows.append({"a": a, "b": b if a.startswith("grad") else f"|{b}|", "n": len(tokens), "rho": rho, "p_value": p})
    agreement = pd.DataFrame(rows)
    agreement.attrs["ig_completeness"] = {"sum_ig": float(ig.sum()), "f_minus_f0": delta_f}
    return tokens, agreement
