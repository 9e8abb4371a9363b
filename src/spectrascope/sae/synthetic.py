"""Activations with a known answer: a planted sparse dictionary in superposition.

x = sum_j c_j d_j + noise, with ``n_features`` unit directions d_j in ``d`` dimensions
(more features than dimensions: superposition), sparse non-negative codes c (each feature
on with probability ``p_active``, magnitude uniform in [0.5, 1.5]) and Gaussian noise of
standard deviation ``noise`` per dimension. An SAE that learned the data recovers the d_j
as decoder rows: :func:`recovery` scores that by the mean over planted features of the best
cosine similarity with any decoder row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlantedDictionary:
    """Samples and the truth behind them.

    Attributes:
        activations: (n, d) float32 samples.
        directions: (n_features, d) unit rows d_j.
        codes: (n, n_features) float32 non-negative codes.
    """

    activations: np.ndarray
    directions: np.ndarray
    codes: np.ndarray


def planted_dictionary(
    n: int = 40_000, d: int = 32, n_features: int = 64, p_active: float = 0.05, noise: float = 0.01, seed: int = 0
) -> PlantedDictionary:
    """Draw ``n`` samples of a planted dictionary (see the module docstring)."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n_features, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    on = rng.random((n, n_features)) < p_active
    codes = np.where(on, rng.uniform(0.5, 1.5, (n, n_features)), 0.0)
    x = codes @ directions + noise * rng.standard_normal((n, d))
    return PlantedDictionary(x.astype(np.float32), directions.astype(np.float32), codes.astype(np.float32))


def best_cosines(truth: np.ndarray, learned: np.ndarray) -> np.ndarray:
    """(n_true,) for each row of ``truth`` the largest cosine similarity with a row of ``learned``."""
    a = truth / np.linalg.norm(truth, axis=1, keepdims=True)
    b = learned / np.maximum(np.linalg.norm(learned, axis=1, keepdims=True), 1e-12)
    return (a @ b.T).max(axis=1)


def recovery(truth: np.ndarray, learned: np.ndarray) -> float:
    """Mean over planted directions of the best cosine with a learned decoder row."""
    return float(best_cosines(truth, learned).mean())
