import numpy as np
import pandas as pd
import pytest
import torch

from spectrascope.activations.batching import token_batches
from spectrascope.activations.run import run_activations
from spectrascope.errors import CorpusError, SiteError, SpectrascopeError
from spectrascope.trace import run_with_cache


def test_tables_have_one_row_per_site_layer_domain(tiny_lm, tmp_path):
    acts, energy = run_activations(tiny_lm, corpora="calendar,arithmetic", sites="resid_post,mlp_out",
                                   max_tokens=600, energy_tokens=200, out_dir=tmp_path)
    assert len(acts) == 2 * 2 * 2 and len(energy) == 8
    assert set(acts["site"]) == {"resid_post", "mlp_out"} and set(acts["domain"]) == {"calendar", "arithmetic"}
    assert (acts["n_tokens"] == 600).all() and (energy["n_tokens"] == 200).all()
    for col in ["alpha", "effective_rank", "erg_delta", "trace_log_energy", "participation_ratio"]:
        assert col in acts
    assert (acts["status"] == "success").all()
    # the pooled reference is the mix of both domains: their energies straddle ~1/2
    assert energy["energy_mean"].between(0.05, 50).all()
    for stem in ["activations", "energy"]:
        assert (tmp_path / f"{stem}.parquet").exists() and (tmp_path / f"{stem}.csv").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "activations.parquet"), acts)


def test_streaming_covariance_equals_stacked_activations(tiny_lm):
    from spectrascope.activations.run import domain_moments
    from spectrascope.corpora import load_corpus

    corpus = load_corpus("calendar")
    moments = domain_moments(tiny_lm, corpus, ["blocks.1.hook_resid_post"], 300, 128)["blocks.1.hook_resid_post"]
    stacked = []
    for batch in token_batches(tiny_lm.tokenizer, corpus.texts, 300):
        mask = batch.pop("stats_mask").bool()
        _, cache = run_with_cache(tiny_lm.hf, batch["input_ids"], sites=["blocks.1.hook_resid_post"],
                                  attention_mask=batch["attention_mask"])
        stacked.append(cache["blocks.1.hook_resid_post"][mask].double())
    X = torch.cat(stacked).numpy()
    cov = moments.covariance(ddof=1).numpy()
    np.testing.assert_allclose(cov, np.cov(X.T), rtol=1e-10, atol=1e-12 * np.abs(cov).max())


def test_bad_input(tiny_lm, tmp_path):
    with pytest.raises(SiteError):
        run_activations(tiny_lm, corpora="calendar", sites="hook_nonsense", max_tokens=10)
    with pytest.raises(SpectrascopeError, match="max-tokens"):
        run_activations(tiny_lm, corpora="calendar", max_tokens=0)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n ")
    with pytest.raises(CorpusError):
        run_activations(tiny_lm, corpora=str(empty), max_tokens=10)
