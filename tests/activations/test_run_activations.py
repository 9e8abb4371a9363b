import numpy as np
import pandas as pd
import pytest
import torch

from spectrascope.activations.batching import text_batches
from spectrascope.activations.run import run_activations
from spectrascope.errors import CorpusError, SiteError, SpectrascopeError
from spectrascope.trace import run_with_cache
from spectrascope.trace.moments import RunningMoments
from spectrascope.trace.passes import SiteMoments, run_pass


def test_tables_have_one_row_per_site_layer_domain_and_variant(tiny_lm, tmp_path):
    acts, energy, _massive = run_activations(
        tiny_lm,
        corpora="calendar,arithmetic",
        sites="resid_post,mlp_out",
        max_tokens=600,
        calibration_tokens=200,
        out_dir=tmp_path,
        n_boot=100,
    )
    assert len(acts) == 2 * 2 * 2 * 2 and len(energy) == 8
    assert set(acts["site"]) == {"resid_post", "mlp_out"} and set(acts["domain"]) == {"calendar", "arithmetic"}
    assert set(acts["variant"]) == {"raw", "robust"}
    assert (acts["n_tokens"] == 600).all() and (energy["n_tokens"] == 600).all()
    for col in [
        "alpha",
        "effective_rank",
        "erg_delta",
        "trace_log_energy",
        "participation_ratio",
        "n_over_d",
        "effective_rank_null",
        "trace_log_energy_null",
    ]:
        assert col in acts
    assert (acts["status"] == "success").all()
    # the pooled reference is the mix of both domains: their energies straddle ~1/2
    assert energy["energy_mean"].between(0.05, 50).all()
    assert (energy["energy_mean_lo"] <= energy["energy_mean"]).all() and (
        energy["energy_mean"] <= energy["energy_mean_hi"]
    ).all()
    for stem in ["activations", "energy", "massive_activations"]:
        assert (tmp_path / f"{stem}.parquet").exists() and (tmp_path / f"{stem}.csv").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "activations.parquet"), acts)


def test_streaming_covariance_equals_stacked_activations(tiny_lm):
    from spectrascope.corpora import load_corpus

    corpus = load_corpus("calendar")
    site = "blocks.1.hook_resid_post"
    moments = SiteMoments([site])
    run_pass(tiny_lm.hf, text_batches(tiny_lm.tokenizer, corpus.texts, 300), [moments])
    stacked = []
    for batch in text_batches(tiny_lm.tokenizer, corpus.texts, 300):
        _, cache = run_with_cache(tiny_lm.hf, batch.input_ids, sites=[site], attention_mask=batch.attention_mask)
        stacked.append(cache[site][batch.stats_mask.bool()].double())
    X = torch.cat(stacked).numpy()
    cov = moments.moments[site].covariance(ddof=1).numpy()
    np.testing.assert_allclose(cov, np.cov(X.T), rtol=1e-10, atol=1e-12 * np.abs(cov).max())


def test_bad_input(tiny_lm, tmp_path):
    with pytest.raises(SiteError):
        run_activations(tiny_lm, corpora="calendar", sites="hook_nonsense", max_tokens=10)
    with pytest.raises(SpectrascopeError, match="max_tokens must be at least 1"):
        run_activations(tiny_lm, corpora="calendar", max_tokens=0)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n ")
    with pytest.raises(CorpusError):
        run_activations(tiny_lm, corpora=str(empty), max_tokens=10)


def test_group_moments_give_the_effective_rank_jackknife_over_texts(tiny_lm):
    """GroupMoments splits a site's tokens by text (index mod G): the groups add up to the site's
    moments, and each jackknife replicate is the effective rank without one group's texts."""
    from spectrascope.activations.covariance_spectra import (
        covariance_eigenvalues,
        effective_rank_replicates,
        shape_metrics,
    )
    from spectrascope.activations.domain_pass import GroupMoments
    from spectrascope.corpora import load_corpus
    from spectrascope.stats.jackknife import jackknife_interval

    site = "blocks.1.hook_resid_post"
    texts = load_corpus("calendar").texts
    moments, groups = SiteMoments([site]), GroupMoments(site, 4)
    run_pass(tiny_lm.hf, text_batches(tiny_lm.tokenizer, texts, 400), [moments, groups])
    assert sorted(groups.groups) == [0, 1, 2, 3]
    assert sum(g.count for g in groups.groups.values()) == moments.moments[site].count
    parts = list(groups.groups.values())
    summed = RunningMoments()
    for g in parts:
        summed.merge(g)
    whole = shape_metrics(covariance_eigenvalues(moments.moments[site]))["effective_rank"]
    estimate = shape_metrics(covariance_eigenvalues(summed))["effective_rank"]
    replicates = effective_rank_replicates(moments.moments[site], parts)
    lo, hi = jackknife_interval(estimate, replicates)
    assert estimate == pytest.approx(whole, rel=1e-9) and lo < estimate < hi
    # group 0 = texts 0, 4, 8, ...: leaving it out equals the covariance of the other texts' tokens
    stacked = []
    for batch in text_batches(tiny_lm.tokenizer, texts, 400):
        _, cache = run_with_cache(tiny_lm.hf, batch.input_ids, sites=[site], attention_mask=batch.attention_mask)
        keep = batch.stats_mask.bool() & (batch.text_index % 4 != 0)[:, None]
        stacked.append(cache[site][keep].double())
    X = torch.cat(stacked).numpy()
    replicate = replicates[list(groups.groups).index(0)]
    expected = shape_metrics(np.clip(np.linalg.eigvalsh(np.cov(X.T)), 0, None))["effective_rank"]
    assert replicate == pytest.approx(expected, rel=1e-8)


def test_the_cka_sample_is_the_same_whatever_order_the_texts_ran_in(tiny_lm):
    """The first 150 statistic tokens of the texts in index order, at every site, ordered by text
    and position, from a pass in text order and one batched by length."""
    from spectrascope.activations.batching import first_tokens
    from spectrascope.activations.domain_pass import SiteSample

    texts = [" ".join(["word"] * n) + " end" for n in [1, 9, 2, 8, 1, 7, 3, 9, 2, 6] * 4]
    sites = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    samples = []
    for by_length in (False, True):
        batches = list(text_batches(tiny_lm.tokenizer, texts, 300, batch_tokens=64, by_length=by_length))
        sample = SiteSample(sites, first_tokens(batches, 150))
        run_pass(tiny_lm.hf, batches, [sample])
        samples.append(sample.arrays())
    for site in sites:
        assert samples[0][site].shape == (150, samples[0][site].shape[1])
        np.testing.assert_allclose(samples[1][site], samples[0][site], rtol=1e-5, atol=1e-6)


def test_a_cka_sample_whose_sites_disagree_is_refused():
    """A site recorded once more than the keys (a module run twice in a forward) is an error, not a
    silently misaligned sample."""
    import torch

    from spectrascope.activations.domain_pass import SiteSample
    from spectrascope.errors import SpectrascopeError

    sample = SiteSample(["a", "b"], {0: 2})
    sample.keys.append(torch.tensor([[0, 1], [0, 2]]))
    sample.parts["a"] = [torch.zeros(2, 3)]
    sample.parts["b"] = [torch.zeros(2, 3), torch.zeros(2, 3)]
    with pytest.raises(SpectrascopeError, match="CKA sample of b holds 4 tokens, 2 keyed"):
        sample.arrays()
