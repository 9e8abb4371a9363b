"""Fourier progress measures on planted embeddings and logits with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from spectrascope.dynamics.fourier import (
    cross_entropy,
    excluded_loss,
    fourier_basis,
    frequency_energy,
    key_frequencies,
    key_projection,
    key_share,
    restricted_loss,
)
from spectrascope.errors import SpectrascopeError

P = 13


def test_basis_is_orthonormal():
    F = fourier_basis(P)
    assert F.shape == (P, P)
    assert np.allclose(F @ F.T, np.eye(P), atol=1e-12)
    with pytest.raises(SpectrascopeError, match="odd modulus"):
        fourier_basis(12)


def test_planted_frequencies_are_the_key_ones():
    p = 31
    x = np.arange(p)
    wave = lambda f, k: f(2 * np.pi * k * x / p)
    # frequency 3 at full strength (cos and sin), 5 at amplitude 0.8, 7 at 0.3, plus a constant
    E = np.stack([wave(np.cos, 3), wave(np.sin, 3), 0.8 * wave(np.cos, 5), 0.3 * wave(np.sin, 7), np.ones(p)], axis=1)
    energy = frequency_energy(E)
    assert energy.shape == ((p - 1) // 2,)
    # ||cos_k E||^2 + ||sin_k E||^2: p/2 per unit-amplitude wave, the constant column not counted
    expected = {3: p, 5: 0.64 * p / 2, 7: 0.09 * p / 2}
    for k, value in expected.items():
        assert energy[k - 1] == pytest.approx(value)
    assert np.allclose(np.delete(energy, [2, 4, 6]), 0, atol=1e-9)
    assert key_share(energy, [3]) == pytest.approx(p / sum(expected.values()))
    # sorted: 31, 9.92, 1.395, then 0.01 each (a small floor): the gaps are 3.1, 7.1, 140: K = 3
    floored = energy + 0.01
    assert key_frequencies(floored) == [3, 5, 7]
    # a floor of 0.5 makes 1.395 / 0.5 = 2.8 < 9.92 / 1.395 = 7.1: K = 2
    assert key_frequencies(energy + 0.5) == [3, 5]
    # six equal key frequencies (each only 2x the mean of 15) are found; a flat profile has none
    six = np.r_[np.full(6, 10.0), np.full(9, 0.5)]
    assert sorted(key_frequencies(six)) == [1, 2, 3, 4, 5, 6]
    assert key_frequencies(np.linspace(1.0, 1.5, 15)) == []


def test_random_embedding_has_no_key_frequency():
    E = np.random.default_rng(0).normal(size=(59, 64))
    assert key_frequencies(frequency_energy(E)) == []


def test_restricted_and_excluded_loss_of_fourier_logits():
    # logits L[(a, b), c] = 4 cos(w_k (a + b - c)) with k = 2: exactly a key-frequency pattern,
    # maximal at c = a + b mod p. Keeping frequency 2 changes nothing; removing it leaves
    # constant logits, whose loss is ln(p).
    a, b = np.divmod(np.arange(P * P), P)
    c = np.arange(P)
    logits = 4 * np.cos(2 * np.pi * 2 * ((a + b)[:, None] - c[None, :]) / P)
    labels = (a + b) % P
    everything = np.ones(P * P, dtype=bool)
    assert np.allclose(key_projection(logits, P, [2]), logits, atol=1e-9)
    assert restricted_loss(logits, labels, everything, P, [2]) == pytest.approx(cross_entropy(logits, labels))
    assert excluded_loss(logits, labels, everything, P, [2]) == pytest.approx(np.log(P))
    # a different frequency keeps nothing but each output's mean (here 0): ln(p) again
    assert restricted_loss(logits, labels, everything, P, [5]) == pytest.approx(np.log(P))


def test_cross_entropy_by_hand():
    # logits (0, ln 3) at label 1: p = 3/4, loss = ln(4/3)
    assert cross_entropy(np.array([[0.0, np.log(3.0)]]), np.array([1])) == pytest.approx(np.log(4 / 3))
