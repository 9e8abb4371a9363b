import numpy as np
import pytest
import torch

from spectrascope.activations.token_energy import ReferenceGaussian, energy_summary
from spectrascope.trace.moments import RunningMoments


def _reference(d=16, n=40_000, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, d))
    cov = A @ A.T + 0.5 * np.eye(d)
    mu = rng.standard_normal(d)
    X = rng.multivariate_normal(mu, cov, size=n)
    m = RunningMoments().update(torch.from_numpy(X))
    return ReferenceGaussian.from_moments(m, ridge=0.0), X, cov


def test_samples_from_the_reference_average_one_half():
    ref, X, _ = _reference()
    e = ref.energy(torch.from_numpy(X)).numpy()
    assert e.mean() == pytest.approx(0.5, abs=0.01)
    fresh = np.random.default_rng(9).multivariate_normal(ref.mu.numpy(), _reference()[2], size=20_000)
    assert ref.energy(torch.from_numpy(fresh)).mean().item() == pytest.approx(0.5, abs=0.02)


def test_hand_computed_energy():
    ref = ReferenceGaussian.from_arrays(np.zeros(2), np.diag([1.0, 4.0]), ridge=0.0)
    # x = (1, 2): 1/2 (1/1 + 4/4) / 2 = 0.5
    assert ref.energy(torch.tensor([[1.0, 2.0]])).item() == pytest.approx(0.5)
    assert ref.energy(torch.tensor([[0.0, 0.0]])).item() == 0.0


def test_out_of_distribution_direction_raises_energy():
    ref, X, _ = _reference()
    u_min = ref.U[:, 0].numpy()  # the least-variance direction
    shifted = X[:2000] + 5 * np.sqrt(ref.lam[-1].item()) * u_min
    assert ref.energy(torch.from_numpy(shifted)).mean().item() > 10 * 0.5


def test_summary():
    s = energy_summary(np.arange(11.0))
    assert s["energy_mean"] == 5 and s["energy_p50"] == 5 and s["energy_p10"] == pytest.approx(1)
    assert np.isnan(energy_summary(np.zeros(0))["energy_mean"])


def test_text_energy_does_not_score_the_sink(tiny_lm, tmp_path, monkeypatch):
    """Position 0 (the attention sink, left out of the reference) gets no energy."""
    from spectrascope.activations.energy_profile import text_energy

    monkeypatch.setenv("SPECTRASCOPE_CACHE", str(tmp_path))
    df = text_energy(tiny_lm, "one two three four five six", corpora="calendar", max_tokens=200, seq_len=32)
    first = df[df["position"] == 0]
    assert len(first) and first["energy"].isna().all() and not first["scored"].any()
    rest = df[df["position"] > 0]
    assert rest["scored"].all() and rest["energy"].notna().all()
