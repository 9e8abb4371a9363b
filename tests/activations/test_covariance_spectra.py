import math

import numpy as np
import pytest
import torch

from spectrascope.activations.covariance_spectra import activation_spectrum_row, shape_metrics
from spectrascope.spectra.metrics import trace_log_energy
from spectrascope.trace.moments import RunningMoments


def test_shape_metrics_by_hand():
    m = shape_metrics(np.array([1.0, 1.0, 2.0]))
    p = np.array([0.25, 0.25, 0.5])
    assert m["effective_rank"] == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert m["participation_ratio"] == pytest.approx(16 / 6)
    assert m["top_share"] == pytest.approx(0.5)
    iso = shape_metrics(np.ones(7))
    assert iso["effective_rank"] == pytest.approx(7) and iso["participation_ratio"] == pytest.approx(7)


def test_trace_log_energy_by_hand():
    assert trace_log_energy(np.ones(5)) == pytest.approx(0.0)
    # eigenvalues 1 and 3: unit-mean 0.5 and 1.5: -(ln .5 + ln 1.5)/2
    assert trace_log_energy(np.array([1.0, 3.0])) == pytest.approx(-(math.log(0.5) + math.log(1.5)) / 2)
    assert trace_log_energy(np.array([1.0, 3.0]) * 17) == pytest.approx(trace_log_energy(np.array([1.0, 3.0])))


def test_row_from_moments_matches_numpy_covariance():
    rng = np.random.default_rng(0)
    X = rng.standard_t(3, size=(5000, 40)) @ rng.standard_normal((40, 40))
    m = RunningMoments()
    for chunk in np.array_split(X, 7):
        m.update(torch.from_numpy(chunk))
    row = activation_spectrum_row(m)
    evals = np.linalg.eigvalsh(np.cov(X.T))
    assert row["n_tokens"] == 5000 and row["d"] == 40
    assert row["lambda_max"] == pytest.approx(evals[-1], rel=1e-10)
    assert row["status"] == "success" and np.isfinite(row["alpha"])


def test_activation_rows_carry_no_training_warning():
    x = torch.randn(500, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    row = activation_spectrum_row(RunningMoments().update(x))
    assert "warning" not in row and row["status"] == "success"
