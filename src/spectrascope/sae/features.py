"""Features against domains: frequency, specificity, sensitivity, top examples, promoted tokens.

One pass over each domain's held-out texts (:func:`~spectrascope.sae.store.is_held_out`:
text the SAE was not trained on) at the SAE's site; the kept tokens are every real token but
each text's first (the attention sink) and massive-activation tokens
(:mod:`spectrascope.sae.massive`; ``n_massive`` in the domain table counts them). For feature i, domain d with kept tokens T_d and
``active_i(t) = [f_i(t) > 0]``:

    sensitivity(i, d) = P(feature active | domain token) = |{t in T_d : active_i(t)}| / |T_d|
                        (the feature's activation frequency on domain d)
    specificity(i, d) = P(domain | feature active), with every domain equally likely a priori
                      = sensitivity(i, d) / sum_d' sensitivity(i, d')

Equal priors make specificity independent of how many tokens each domain contributed (it
equals the raw share of the feature's activations that fall in d when the domains are the
same size); chance level is 1 / number of domains. A feature's *top domain* maximizes its
specificity. **Domain-selective** features are ranked by specificity x sensitivity in their
top domain, among features active at least ``min_active`` times.

Statistics: 95 % intervals by bootstrap over texts within each domain (``n_boot``); a
permutation control (domain labels shuffled across texts, ``n_perm`` times) gives each
feature's p-value for its top-domain specificity (max over domains, so the null has the same
selection), and Benjamini-Hochberg q-values over the features tested.

Max-activating examples come from a streaming top-k kept during the same pass (no second
pass): for every feature the ``n_examples`` largest activations with their text, position and
a window of token ids around the token; the activating token is marked ``«token»``.
Activation histograms count the positive activations in log-spaced bins. Promoted tokens:
decoder direction i through the unembedding, ``(gamma * W_dec[i]) @ W_U^T`` with gamma the
final norm's weight (the direct effect on the logits of adding the direction, up to the
norm's 1/rms factor, which is the same for every token); residual-stream sites only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..progress import progress_bar
from .base import SaeError, SparseAutoencoder
from .massive import massive_mask
from .sites import SiteBinding, bind_site
from .store import site_activations

HIST_EDGES = np.logspace(-3, 3, 31)
"""Bin edges (activation units) of the activation histograms; values outside go to the end bins."""
CONTEXT_BEFORE, CONTEXT_AFTER = 12, 4
MARK_LEFT, MARK_RIGHT = "«", "»"


@dataclass
class FeatureReport:
    """The tables of :func:`sae_features`.

    Attributes:
        domains: one row per (feature, domain): feature, domain, n_tokens, n_massive (tokens
            left out as massive), n_active,
            sensitivity, specificity, mean_activation (mean of positive activations).
        ranking: one row per feature with at least ``min_active`` activations, ranked:
            rank, feature, top_domain, specificity (+_lo, _hi), sensitivity (+_lo, _hi),
            frequency (over all held-out tokens), n_active, max_activation, score
            (specificity x sensitivity), p_value, q_value, selective (q < 0.05 and
            specificity above chance).
        examples: feature, rank, activation, domain, text, position, token, context.
        histograms: feature, bin_lo, bin_hi, count.
        logits: feature, direction (promoted / suppressed), rank, token, logit.
    """

    domains: pd.DataFrame
    ranking: pd.DataFrame
    examples: pd.DataFrame
    histograms: pd.DataFrame
    logits: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        """Stem -> table, as written by :func:`write_feature_tables`."""
        return {
            "feature_domains": self.domains,
            "feature_ranking": self.ranking,
            "feature_examples": self.examples,
            "feature_histograms": self.histograms,
            "feature_logits": self.logits,
        }


class StreamingTopK:
    """The ``k`` largest activations of every feature seen so far, with their contexts.

    State: values (k, d_sae) descending, and for each entry its text id, position, domain
    id and a context window of token ids (k, d_sae, window), -1 where the text has none.
    """

    def __init__(self, k: int, d_sae: int, window: int) -> None:
        self.k, self.window = k, window
        self.values = torch.full((k, d_sae), -1.0)
        self.text = torch.full((k, d_sae), -1, dtype=torch.long)
        self.position = torch.full((k, d_sae), -1, dtype=torch.long)
        self.domain = torch.full((k, d_sae), -1, dtype=torch.long)
        self.context = torch.full((k, d_sae, window), -1, dtype=torch.long)

    def update(
        self, codes: torch.Tensor, text: torch.Tensor, position: torch.Tensor, domain: int, windows: torch.Tensor
    ) -> None:
        """Merge a batch: codes (n, d_sae), per-token text, position (n,), windows (n, window)."""
        k = min(self.k, codes.shape[0])
        values, index = torch.topk(codes, k, dim=0)  # (k, d_sae)
        values = torch.cat([self.values, values])
        order = torch.topk(values, self.k, dim=0).indices  # (k, d_sae) rows of the concatenation
        new = lambda old, fresh: torch.cat([old, fresh]).gather(0, order)
        self.text = new(self.text, text[index])
        self.position = new(self.position, position[index])
        self.domain = new(self.domain, torch.full_like(index, domain))
        ctx = torch.cat([self.context, windows[index]])
        self.context = ctx.gather(0, order.unsqueeze(-1).expand(-1, -1, self.window))
        self.values = values.gather(0, order)


def _windows(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: torch.Tensor, before: int, after: int
) -> torch.Tensor:
    """(kept tokens, before + 1 + after) token ids around each kept token, -1 beyond the text."""
    ids = input_ids.masked_fill(attention_mask == 0, -1)
    padded = torch.nn.functional.pad(ids, (before, after), value=-1)
    windows = padded.unfold(1, before + 1 + after, 1)  # (batch, pos, window)
    return windows[keep]


def _mark(tokenizer: Any, window: list[int], center: int) -> tuple[str, str]:
    """(the token, the context with the token marked) from a window of ids (-1 = none)."""
    pieces = [tokenizer.decode([t]) if t >= 0 else "" for t in window]
    token = pieces[center]
    return token, "".join(pieces[:center]) + MARK_LEFT + token + MARK_RIGHT + "".join(pieces[center + 1 :])


def promoted_tokens(binding: SiteBinding, features: list[int], top: int = 10) -> pd.DataFrame:
    """Tokens each feature's decoder direction promotes and suppresses most (module docstring)."""
    columns = ["feature", "direction", "rank", "token", "logit"]
    if not binding.in_residual_stream or not features:
        return pd.DataFrame(columns=columns)
    from ..mech.unembed import unembed_parts

    parts = unembed_parts(binding.loaded)
    gamma = getattr(parts.norm, "weight", None)
    lm_weight = parts.lm_head.weight
    assert isinstance(lm_weight, torch.Tensor)  # the unembedding's weight parameter
    W_U = lm_weight.detach().float()
    rows = []
    with torch.no_grad():
        directions = binding.sae.W_dec.detach()[features].float()
        if gamma is not None:
            directions = directions * gamma.detach().float()
        logits = directions @ W_U.T
        for name, sign in (("promoted", 1.0), ("suppressed", -1.0)):
            values, index = torch.topk(sign * logits, min(top, logits.shape[1]), dim=1)
            for r, feature in enumerate(features):
                for rank, (v, t) in enumerate(zip(values[r].tolist(), index[r].tolist(), strict=True), start=1):
                    rows.append(
                        {
                            "feature": feature,
                            "direction": name,
                            "rank": rank,
                            "token": binding.loaded.tokenizer.decode([t]),
                            "logit": sign * v,
                        }
                    )
    return pd.DataFrame(rows, columns=columns)


def _benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    n = p.size
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def selectivity(
    counts: np.ndarray, tokens: np.ndarray, domain_of: np.ndarray, n_domains: int
) -> tuple[np.ndarray, np.ndarray]:
    """(sensitivity, specificity), each (n_domains, d_sae), from per-text active counts.

    Args:
        counts: (n_texts, d_sae) tokens of each text on which each feature fired.
        tokens: (n_texts,) kept tokens per text; domain_of: (n_texts,) domain index.
    """
    onehot = np.zeros((n_domains, domain_of.size))
    onehot[domain_of, np.arange(domain_of.size)] = 1.0
    active = onehot @ counts
    sensitivity = active / np.maximum(onehot @ tokens, 1)[:, None]
    total = sensitivity.sum(axis=0, keepdims=True)
    specificity = np.divide(sensitivity, total, out=np.full_like(sensitivity, np.nan), where=total > 0)
    return sensitivity, specificity


def sae_features(
    sae: SparseAutoencoder,
    model: Any,
    site: str | None = None,
    corpus: str | None = None,
    tokens: int = 2048,
    seq_len: int = 128,
    n_examples: int = 10,
    min_active: int = 5,
    n_boot: int = 200,
    n_perm: int = 200,
    top_logit_features: int = 50,
    seed: int = 0,
    show_progress: bool = False,
) -> FeatureReport:
    """Measure every feature against the domains on held-out text (see the module docstring).

    Args:
        sae: the SAE; model: name, path or loaded model; site: None = the SAE's hook_name.
        corpus: comma-separated domains (built-in names and/or paths; None: all built-in).
        tokens: held-out tokens per domain.
        n_examples: max-activating examples kept per feature.
        min_active: activations a feature needs to be ranked and tested.
        n_boot, n_perm: bootstrap resamples and label permutations.
        top_logit_features: promoted tokens are computed for this many top-ranked features.
    """
    from ..corpora import DEFAULT_CORPORA, corpus_texts

    binding = bind_site(model, sae, site)
    domains = corpus_texts(corpus or DEFAULT_CORPORA)
    if len(domains) < 2:
        raise SaeError("feature specificity compares domains: give at least two corpora")
    window = CONTEXT_BEFORE + 1 + CONTEXT_AFTER
    top = StreamingTopK(n_examples, sae.d_sae, window)
    hist = torch.zeros(sae.d_sae * (len(HIST_EDGES) + 1), dtype=torch.long)
    edges = torch.tensor(HIST_EDGES, dtype=torch.float32)
    activation_sum = np.zeros((len(domains), sae.d_sae))
    text_counts: list[np.ndarray] = []
    text_tokens: list[int] = []
    text_domain: list[int] = []
    n_massive = np.zeros(len(domains), dtype=int)
    with progress_bar("SAE features", total=len(domains), enabled=show_progress) as advance:
        for d, corpus_d in enumerate(domains):
            for batch in binding.held_out_batches(corpus_d.texts, tokens, seq_len):
                x = site_activations(binding.hf, batch, binding.site, binding.device)
                ordinary = ~massive_mask(x, binding.massive_factor)
                n_massive[d] += int((~ordinary).sum())
                with torch.no_grad():
                    codes = sae.encode(x[ordinary].to(sae.device)).cpu()
                rows, positions = torch.nonzero(batch.keep, as_tuple=True)
                rows, positions = rows[ordinary], positions[ordinary]
                texts = batch.texts.long()[rows]
                windows = _windows(batch.input_ids, batch.attention_mask, batch.keep, CONTEXT_BEFORE, CONTEXT_AFTER)
                top.update(codes, texts, positions, d, windows[ordinary])
                nz_tok, nz_feat = torch.nonzero(codes > 0, as_tuple=True)
                values = codes[nz_tok, nz_feat]
                bins = torch.bucketize(values, edges)
                hist.index_add_(0, nz_feat * (len(HIST_EDGES) + 1) + bins, torch.ones_like(bins))
                activation_sum[d] += codes.double().sum(dim=0).numpy()
                for r in range(batch.input_ids.shape[0]):
                    on_row = rows == r
                    text_counts.append((codes[on_row] > 0).sum(dim=0).numpy())
                    text_tokens.append(int(on_row.sum()))
                    text_domain.append(d)
            advance(1)
    if not text_tokens:
        from ..errors import CorpusError

        raise CorpusError("the held-out texts gave no tokens")
    counts = np.stack(text_counts).astype(np.float64)
    n_tok = np.asarray(text_tokens, dtype=np.float64)
    dom = np.asarray(text_domain)
    names = [c.name for c in domains]
    sens, spec = selectivity(counts, n_tok, dom, len(domains))
    n_active_d = np.zeros((len(domains), sae.d_sae))
    np.add.at(n_active_d, dom, counts)
    domain_rows = _domain_table(names, sens, spec, n_active_d, activation_sum, dom, n_tok)
    domain_rows.insert(3, "n_massive", n_massive[domain_rows["domain"].map({n: i for i, n in enumerate(names)})])
    ranking = _ranking(names, sens, spec, counts, n_tok, dom, top, min_active, n_boot, n_perm, seed)
    ranked_features = ranking["feature"].head(top_logit_features).tolist()
    card_features = ranked_features or list(range(min(top_logit_features, sae.d_sae)))
    return FeatureReport(
        domain_rows,
        ranking,
        _examples(binding, top, names, card_features),
        _histograms(hist, sae.d_sae, card_features),
        promoted_tokens(binding, card_features),
    )


def _domain_table(names, sens, spec, n_active_d, activation_sum, dom, n_tok) -> pd.DataFrame:
    tokens_d = np.array([n_tok[dom == d].sum() for d in range(len(names))])
    frames = []
    for d, name in enumerate(names):
        frames.append(
            pd.DataFrame(
                {
                    "feature": np.arange(sens.shape[1]),
                    "domain": name,
                    "n_tokens": int(tokens_d[d]),
                    "n_active": n_active_d[d].astype(int),
                    "sensitivity": sens[d],
                    "specificity": spec[d],
                    "mean_activation": np.divide(
                        activation_sum[d], n_active_d[d], out=np.full(sens.shape[1], np.nan), where=n_active_d[d] > 0
                    ),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _ranking(
    names, sens, spec, counts, n_tok, dom, top: StreamingTopK, min_active, n_boot, n_perm, seed
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_domains = len(names)
    total_active = counts.sum(axis=0)
    tested = np.flatnonzero(total_active >= min_active)
    columns = [
        "rank",
        "feature",
        "top_domain",
        "specificity",
        "specificity_lo",
        "specificity_hi",
        "sensitivity",
        "sensitivity_lo",
        "sensitivity_hi",
        "frequency",
        "n_active",
        "max_activation",
        "score",
        "p_value",
        "q_value",
        "selective",
    ]
    if tested.size == 0:
        return pd.DataFrame(columns=columns)
    c = counts[:, tested]
    top_domain = np.nan_to_num(spec[:, tested], nan=-1).argmax(axis=0)
    cols = np.arange(tested.size)
    observed = spec[top_domain, tested]
    boot_spec, boot_sens = [], []
    groups = [np.flatnonzero(dom == d) for d in range(n_domains)]
    for _ in range(n_boot):
        pick = np.concatenate([rng.choice(g, g.size) for g in groups if g.size])
        s, p = selectivity(c[pick], n_tok[pick], dom[pick], n_domains)
        boot_spec.append(p[top_domain, cols])
        boot_sens.append(s[top_domain, cols])
    exceed = np.zeros(tested.size)
    for _ in range(n_perm):
        _, p = selectivity(c, n_tok, rng.permutation(dom), n_domains)
        exceed += np.nan_to_num(p, nan=0).max(axis=0) >= observed - 1e-12
    p_value = (1 + exceed) / (1 + n_perm)
    q_value = _benjamini_hochberg(p_value)

    def interval(draws, q):
        return np.nanpercentile(np.stack(draws), q, axis=0) if draws else np.full(tested.size, np.nan)

    table = pd.DataFrame(
        {
            "feature": tested,
            "top_domain": np.asarray(names)[top_domain],
            "specificity": observed,
            "specificity_lo": interval(boot_spec, 2.5),
            "specificity_hi": interval(boot_spec, 97.5),
            "sensitivity": sens[top_domain, tested],
            "sensitivity_lo": interval(boot_sens, 2.5),
            "sensitivity_hi": interval(boot_sens, 97.5),
            "frequency": total_active[tested] / n_tok.sum(),
            "n_active": total_active[tested].astype(int),
            "max_activation": top.values[0, tested].numpy().astype(float),
            "p_value": p_value,
            "q_value": q_value,
        }
    )
    table["score"] = table["specificity"] * table["sensitivity"]
    table["selective"] = (table["q_value"] < 0.05) & (table["specificity"] > 1.0 / n_domains)
    table = table.sort_values(["score", "feature"], ascending=[False, True], kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table[columns]


def _examples(binding: SiteBinding, top: StreamingTopK, names: list[str], features: list[int]) -> pd.DataFrame:
    rows = []
    for feature in features:
        for rank in range(top.k):
            value = float(top.values[rank, feature])
            if value <= 0:
                break
            token, context = _mark(binding.loaded.tokenizer, top.context[rank, feature].tolist(), CONTEXT_BEFORE)
            rows.append(
                {
                    "feature": feature,
                    "rank": rank + 1,
                    "activation": value,
                    "domain": names[int(top.domain[rank, feature])],
                    "text": int(top.text[rank, feature]),
                    "position": int(top.position[rank, feature]),
                    "token": token,
                    "context": context,
                }
            )
    return pd.DataFrame(
        rows, columns=["feature", "rank", "activation", "domain", "text", "position", "token", "context"]
    )


def _histograms(hist: torch.Tensor, d_sae: int, features: list[int]) -> pd.DataFrame:
    grid = hist.view(d_sae, len(HIST_EDGES) + 1).numpy()
    lo = np.concatenate([[0.0], HIST_EDGES])
    hi = np.concatenate([HIST_EDGES, [np.inf]])
    frames = [pd.DataFrame({"feature": f, "bin_lo": lo, "bin_hi": hi, "count": grid[f]}) for f in features]
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["feature", "bin_lo", "bin_hi", "count"])
    )


def write_feature_tables(report: FeatureReport, out_dir: Any) -> None:
    """Write every table of ``report`` (Parquet + CSV) into ``out_dir``."""
    from ..tables import write_table

    for stem, table in report.tables().items():
        write_table(table, out_dir, stem)
