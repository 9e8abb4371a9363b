"""Feature statistics: specificity and sensitivity by hand, the streaming top-k against a
full sort, and a planted token detector that must come out as arithmetic-selective with
its token marked in every top example."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from spectrascope.sae.features import (
    MARK_LEFT,
    MARK_RIGHT,
    StreamingTopK,
    sae_features,
    selectivity,
)

SITE = "blocks.0.hook_resid_pre"  # the token embeddings: a feature can detect one token exactly


def test_selectivity_by_hand():
    # two domains; domain 0: texts with 10 and 30 tokens, domain 1: one text with 20 tokens
    counts = np.array([[5.0, 0.0], [5.0, 2.0], [10.0, 2.0]])
    tokens = np.array([10.0, 30.0, 20.0])
    domain = np.array([0, 0, 1])
    sens, spec = selectivity(counts, tokens, domain, 2)
    assert np.allclose(sens, [[10 / 40, 2 / 40], [10 / 20, 2 / 20]])
    assert np.allclose(spec[:, 0], [0.25 / 0.75, 0.5 / 0.75])  # equal priors, not token shares
    assert np.allclose(spec[:, 1], [0.05 / 0.15, 0.1 / 0.15])


def test_streaming_topk_matches_a_full_sort():
    g = torch.Generator().manual_seed(0)
    batches = [torch.rand(n, 5, generator=g) * (torch.rand(n, 5, generator=g) > 0.5) for n in (7, 2, 11)]
    top = StreamingTopK(3, 5, window=1)
    offset = 0
    for b in batches:
        positions = torch.arange(offset, offset + b.shape[0])
        top.update(b, positions, positions, 0, positions.view(-1, 1))
        offset += b.shape[0]
    everything = torch.cat(batches)
    values, index = torch.topk(everything, 3, dim=0)
    assert torch.equal(top.values, values)
    assert torch.equal(top.text, index) and torch.equal(top.context[..., 0], index)


def test_planted_token_detector_is_arithmetic_selective(tiny, detector):
    report = sae_features(
        detector("+"), tiny, site=SITE, corpus="calendar,arithmetic", tokens=300, n_boot=50, n_perm=50, n_examples=5
    )
    ranking = report.ranking
    assert ranking["feature"].tolist() == [0]  # the only feature that fires
    top = ranking.iloc[0]
    assert top["top_domain"] == "arithmetic" and top["specificity"] == pytest.approx(1.0)
    assert top["p_value"] < 0.05 and bool(top["selective"])
    assert top["specificity_lo"] <= top["specificity"] <= top["specificity_hi"]
    examples = report.examples[report.examples["feature"] == 0]
    assert len(examples) == 5 and (examples["token"] == "+").all()
    assert examples["context"].str.contains(f"{MARK_LEFT}\\+{MARK_RIGHT}").all()
    assert (examples["domain"] == "arithmetic").all()
    domains = report.domains[report.domains["feature"] == 0].set_index("domain")
    assert domains.loc["calendar", "n_active"] == 0 and domains.loc["arithmetic", "sensitivity"] > 0
    hist = report.histograms[report.histograms["feature"] == 0]
    assert hist["count"].sum() == domains["n_active"].sum()
    logits = report.logits[(report.logits["feature"] == 0) & (report.logits["direction"] == "promoted")]
    assert len(logits) == 10 and logits["logit"].is_monotonic_decreasing
    direction = (detector("+").W_dec[0] * tiny.hf.model.norm.weight).detach()
    expected = (direction @ tiny.hf.lm_head.weight.detach().T).max()
    assert logits["logit"].iloc[0] == pytest.approx(float(expected), rel=1e-5)
    assert isinstance(report.tables()["feature_ranking"], pd.DataFrame)


def test_features_need_two_domains(tiny, detector):
    from spectrascope.sae.base import SaeError

    with pytest.raises(SaeError, match="at least two"):
        sae_features(detector("+"), tiny, site=SITE, corpus="calendar")
