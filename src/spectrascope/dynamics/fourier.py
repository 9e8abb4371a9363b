"""Fourier progress measures of modular addition (Nanda, Chan, Lieberum, Smith & Steinhardt
2023, "Progress measures for grokking via mechanistic interpretability").

A model that has grokked a + b mod p computes with a few *key frequencies* w_k = 2 pi k / p:
its embedding of the numbers 0 .. p-1 is sparse in the Fourier basis over Z_p, and its
logits are sums of cos(w_k (a + b - c)) over the key k.

Definitions (p odd; positions 0 .. p-1 of the embedding are the numbers):

- Fourier basis over Z_p: the p x p orthonormal matrix with rows 1/sqrt(p), then for
  k = 1 .. (p-1)/2 the rows sqrt(2/p) cos(w_k x) and sqrt(2/p) sin(w_k x).
- Frequency energy of an embedding E (p, d): e_k = ||cos_k E||^2 + ||sin_k E||^2, the
  squared norm of its frequency-k component (the constant component is left out).
- Key frequencies: sort the energies in decreasing order, e_(1) >= e_(2) >= ...; the key
  frequencies are the top K, where K (at most half the frequencies) maximizes the gap
  e_(K) / e_(K+1), provided that gap is at least ``min_gap`` (default 2); otherwise there
  are none. A random embedding spreads its energy evenly (consecutive sorted energies
  differ by a few 1/sqrt(d)), so it has none; a grokked one has a handful well above the rest.
  (A fixed threshold such as "3x the mean energy" is brittle: six or seven key frequencies
  of equal strength each hold only ~3x the mean of p/2 frequencies.)
- Key-frequency directions of the logits: over the p^2 inputs (a, b), the unit vectors
  u_k^cos ∝ cos(w_k (a + b)) and u_k^sin ∝ sin(w_k (a + b)); they are orthogonal to each
  other and to the constant. P(L) = sum over key k of u u^T L, for L (p^2, vocab).
- Restricted loss: the loss on the *test* pairs of mean_ab(L) + P(L): only the key
  frequencies (and a constant per output) kept. It falls when the generalizing circuit forms.
- Excluded loss: the loss on the *train* pairs of L - P(L): the key frequencies removed.
  It rises when the model starts to rely on the generalizing circuit to fit the training set.

Nanda et al. restrict the MLP neuron activations of a model without normalization, whose
logits are linear in them; this model has a final RMSNorm, so the same projections are
applied to the logits themselves (for a norm-free model the two agree up to the direct path
from the embedding to the logits).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import SpectrascopeError

DEFAULT_MIN_GAP = 2.0


def fourier_basis(p: int) -> np.ndarray:
    """(p, p) orthonormal Fourier basis over Z_p (rows: constant, cos 1, sin 1, ..., cos K, sin K)."""
    if p < 3 or p % 2 == 0:
        raise SpectrascopeError(f"the Fourier basis here needs an odd modulus p >= 3 (got {p})")
    x = np.arange(p)
    rows = [np.full(p, 1.0 / np.sqrt(p))]
    for k in range(1, (p - 1) // 2 + 1):
        rows.append(np.sqrt(2.0 / p) * np.cos(2 * np.pi * k * x / p))
        rows.append(np.sqrt(2.0 / p) * np.sin(2 * np.pi * k * x / p))
    return np.stack(rows)


def frequency_energy(embedding: np.ndarray) -> np.ndarray:
    """((p-1)/2,) energy e_k of each frequency k = 1 .. (p-1)/2 of an embedding (p, d)."""
    E = np.asarray(embedding, dtype=np.float64)
    coefficients = fourier_basis(E.shape[0]) @ E  # (p, d)
    squared = np.sum(coefficients * coefficients, axis=1)
    return squared[1::2] + squared[2::2]


def key_frequencies(energy: np.ndarray, min_gap: float = DEFAULT_MIN_GAP) -> list[int]:
    """Key frequencies k (1-based) of an energy profile, strongest first (module docstring)."""
    e = np.asarray(energy, dtype=np.float64)
    if e.size < 2 or e.max() <= 0:
        return []
    order = np.argsort(-e, kind="stable")
    ranked = e[order]
    top = max(1, e.size // 2)
    with np.errstate(divide="ignore"):
        gaps = ranked[:top] / np.maximum(ranked[1 : top + 1], 1e-300)
    k = int(np.argmax(gaps))
    return [int(i) + 1 for i in order[: k + 1]] if gaps[k] >= min_gap else []


def key_share(energy: np.ndarray, keys: Sequence[int]) -> float:
    """Share of the (non-constant) embedding energy in the frequencies ``keys``."""
    e = np.asarray(energy, dtype=np.float64)
    total = e.sum()
    return float(e[[k - 1 for k in keys]].sum() / total) if total > 0 and len(keys) else 0.0


def key_projection(logits: np.ndarray, p: int, keys: Sequence[int]) -> np.ndarray:
    """P(L): the key-frequency components of logits L (p*p, vocab) over the inputs, rows in
    (a, b) row-major order (row a * p + b)."""
    L = np.asarray(logits, dtype=np.float64)
    if L.shape[0] != p * p:
        raise SpectrascopeError(f"expected logits for all {p * p} pairs, got {L.shape[0]} rows")
    a, b = np.divmod(np.arange(p * p), p)
    projected = np.zeros_like(L)
    for k in keys:
        for wave in (np.cos, np.sin):
            u = wave(2 * np.pi * k * (a + b) / p)
            u /= np.linalg.norm(u)
            projected += np.outer(u, u @ L)
    return projected


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy (nats) of logits (n, vocab) at integer labels (n,), in float64."""
    L = np.asarray(logits, dtype=np.float64)
    shifted = L - L.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_z - shifted[np.arange(len(labels)), labels]))


def restricted_loss(
    logits: np.ndarray, labels: np.ndarray, test_mask: np.ndarray, p: int, keys: Sequence[int]
) -> float:
    """Loss on the test pairs with only the key frequencies (and each output's mean) kept."""
    L = np.asarray(logits, dtype=np.float64)
    kept = L.mean(axis=0, keepdims=True) + key_projection(L, p, keys)
    return cross_entropy(kept[test_mask], np.asarray(labels)[test_mask])


def excluded_loss(logits: np.ndarray, labels: np.ndarray, train_mask: np.ndarray, p: int, keys: Sequence[int]) -> float:
    """Loss on the train pairs with the key frequencies removed from the logits."""
    L = np.asarray(logits, dtype=np.float64)
    removed = L - key_projection(L, p, keys)
    return cross_entropy(removed[train_mask], np.asarray(labels)[train_mask])
