"""Circular structure of cyclic classes (months, weekdays) in activations.

The research notes' calendar experiment: are months and weekdays laid out on a circle,
in calendar order, in a low-dimensional subspace of the residual stream? For K classes
``k = 0 .. K-1`` (January = 0, Monday = 0) the calendar circle puts class ``k`` at angle
``2 pi k / K``. :func:`circle_scores` measures, from (n, d) activations and class
indices, with a seeded held-out split:

- the **plane**: the top two Fisher discriminant directions (``plane="lda"``, default):
  the principal directions of the (training) class means after whitening by the
  within-class covariance (shrunk towards a multiple of the identity, Ledoit-Wolf), i.e.
  the 2-D subspace of the probe directions that separates the classes best relative to
  their spread; or simply the top two principal directions of the class means
  (``plane="pca"``), which a direction with large within-class variance can dominate;
- ``circle_r2``: held-out R^2 of an affine map from each example's 2-D coordinates in the
  plane to ``(cos 2 pi k/K, sin 2 pi k/K)`` of its class. Only two inputs: an affine map
  can turn an ellipse traversed in calendar order into the unit circle, but it cannot
  reorder the classes, so a high value needs the classes to sit around the plane in
  calendar order (a full-dimensional regression could fit *any* assignment of angles to
  linearly separable classes, which would make it no test of circularity);
- ``circle_r2_control``: the same with the class -> angle assignment randomly permuted
  (mean over ``n_controls``); a circle in calendar order scores well above it;
- ``order_score``: with the classes sorted by the angle of their mean in the plane, the
  share of calendar-adjacent pairs ``(k, k+1 mod K)`` that are adjacent on the fitted
  circle: 1 for calendar order (either direction), ``2 / (K - 1)`` expected for a random
  order (``order_chance``);
- ``radius_cv``: coefficient of variation of the class means' distances from their
  centroid in the plane (0 for points on a circle).

:func:`calendar_experiment` runs this with month and weekday probes on a model, layer by
layer, on texts from :func:`~spectrascope.corpora.calendar_probe.calendar_texts` (the
built-in ``calendar`` corpus plus templates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..corpora.calendar_probe import calendar_targets, calendar_texts
from ..errors import SpectrascopeError
from .probes import r2_score, small_blas, split_indices

#: Columns of :func:`circle_scores` (one value each).
CIRCLE_COLUMNS: dict[str, str] = {
    "circle_r2": "held-out R^2 of (cos, sin) of the calendar angle from the 2-D plane coordinates",
    "circle_r2_control": "the same with a random class -> angle assignment (mean over controls)",
    "order_score": "share of calendar-adjacent class pairs adjacent on the fitted circle (1 = calendar order)",
    "order_chance": "expected order_score of a random order: 2 / (K - 1)",
    "radius_cv": "std / mean of the class means' radii in the plane (0 = on a circle)",
}


@dataclass
class CirclePlane:
    """A 2-D plane in activation space and the classes' positions in it.

    Attributes:
        center: (d,) mean of the class means (the circle's center in activation space).
        basis: (d, 2) directions; ``coords = (x - center) @ basis``.
        class_coords: (K, 2) class means in the plane (NaN rows for classes without training examples).
        angles: (K,) angle of each class mean, radians in (-pi, pi].
    """

    center: np.ndarray
    basis: np.ndarray
    class_coords: np.ndarray
    angles: np.ndarray

    def project(self, x: np.ndarray) -> np.ndarray:
        """(n, 2) coordinates of (n, d) activations."""
        return (np.asarray(x, dtype=np.float64) - self.center) @ self.basis


def calendar_angles(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, 2) points ``(cos 2 pi k/K, sin 2 pi k/K)`` of class indices ``k``."""
    theta = 2 * np.pi * np.asarray(classes, dtype=np.float64) / n_classes
    return np.stack([np.cos(theta), np.sin(theta)], axis=1)


def fit_plane(
    x: np.ndarray, classes: np.ndarray, n_classes: int, plane: str = "lda", shrinkage: float | None = None
) -> CirclePlane:
    """The 2-D plane of the class means of ``x`` (n, d) (see the module doc for ``plane``).

    ``lda`` whitens with the shrunk within-class covariance ``(1 - s) S_w + s tr(S_w)/d I``;
    ``shrinkage`` ``s`` in [0, 1], or ``None`` for the Ledoit-Wolf estimate.
    """
    x = np.asarray(x, dtype=np.float64)
    classes = np.asarray(classes)
    present = [k for k in range(n_classes) if np.any(classes == k)]
    if len(present) < 3:
        raise SpectrascopeError(f"a circle needs at least 3 classes with examples (got {len(present)})")
    means = np.full((n_classes, x.shape[1]), np.nan)
    for k in present:
        means[k] = x[classes == k].mean(axis=0)
    center = means[present].mean(axis=0)
    centered = means[present] - center
    if plane == "pca":
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        basis = vt[:2].T
    elif plane == "lda":
        basis = _discriminant_plane(x - means[classes], centered, shrinkage)
    else:
        raise SpectrascopeError(f"unknown circle plane {plane!r}: use 'pca' or 'lda'")
    if basis.shape[1] < 2:
        basis = np.pad(basis, ((0, 0), (0, 2 - basis.shape[1])))
    coords = (means - center) @ basis
    angles = np.arctan2(coords[:, 1], coords[:, 0])
    return CirclePlane(center=center, basis=basis, class_coords=coords, angles=angles)


def ledoit_wolf_shrinkage(residuals: np.ndarray) -> float:
    """Ledoit-Wolf shrinkage intensity of the covariance of centered rows ``residuals`` (n, d), in [0, 1].

    The same estimate as scikit-learn's ``ledoit_wolf_shrinkage``, computed from the n x n Gram matrix.
    """
    n, d = residuals.shape
    gram = residuals @ residuals.T
    norms2 = np.diag(gram)
    trace = norms2.sum() / n
    mu = trace / d
    cov_frob2 = (gram**2).sum() / n**2  # ||X^T X / n||_F^2
    delta = (cov_frob2 - 2 * mu * trace + d * mu**2) / d
    beta = ((norms2**2).sum() / n - cov_frob2) / (d * n)
    if delta <= 0:
        return 1.0
    return float(np.clip(min(beta, delta) / delta, 0.0, 1.0))


def _discriminant_plane(within: np.ndarray, centered_means: np.ndarray, shrinkage: float | None) -> np.ndarray:
    """(d, 2) Fisher discriminant directions: top PCs of the class means whitened by the shrunk within-class covariance."""
    n, d = within.shape
    s = ledoit_wolf_shrinkage(within) if shrinkage is None else float(shrinkage)
    if not 0 <= s <= 1:
        raise SpectrascopeError(f"shrinkage must be between 0 and 1 (got {s})")
    mu = float((within**2).sum() / n / d)
    _, sing, vt = np.linalg.svd(within / np.sqrt(n), full_matrices=False)
    floor = max(s * mu, 1e-9 * max(float(sing.max(initial=0.0)) ** 2, 1e-30))
    eig = np.maximum((1 - s) * sing**2 + s * mu, floor)  # covariance eigenvalues in the residual span
    # outside that span the covariance is s * mu (or the floor)

    def inv_sqrt(v: np.ndarray) -> np.ndarray:  # rows of v times C^(-1/2)
        along = v @ vt.T
        return (along / np.sqrt(eig)) @ vt + (v - along @ vt) / np.sqrt(floor)

    _, _, wt = np.linalg.svd(inv_sqrt(centered_means), full_matrices=False)
    return inv_sqrt(wt[:2]).T  # coordinates (x - c) C^(-1/2) w  =  (x - c) @ (C^(-1/2) w)


def order_score(angles: np.ndarray) -> float:
    """Share of calendar-adjacent pairs ``(k, k+1 mod K)`` adjacent in the angular order of ``angles`` (K,).

    NaN angles (classes without a position) count as not adjacent.
    """
    angles = np.asarray(angles, dtype=np.float64)
    n_classes = len(angles)
    if n_classes < 3:
        raise SpectrascopeError("an order score needs at least 3 classes")
    known = np.flatnonzero(np.isfinite(angles))
    ring = known[np.argsort(angles[known], kind="stable")]
    neighbors: dict[int, set[int]] = {int(k): set() for k in ring}
    for i, k in enumerate(ring):
        neighbors[int(k)].update({int(ring[i - 1]), int(ring[(i + 1) % len(ring)])})
    hits = sum(1 for k in range(n_classes) if (k + 1) % n_classes in neighbors.get(k, ()))
    return hits / n_classes


def circle_scores(
    x: np.ndarray,
    classes: np.ndarray,
    n_classes: int,
    seed: int = 0,
    test_size: float = 0.25,
    plane: str = "lda",
    n_controls: int = 5,
    split: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """Circularity of the classes ``classes`` (n,) in ``0..n_classes-1`` in activations ``x`` (n, d).

    Returns a dict with the keys of :data:`CIRCLE_COLUMNS`. The plane and the affine map
    are fitted on the training split (seeded, stratified; or ``split=(train, test)``),
    R^2 is measured on the held-out split, ``order_score`` uses the training class means.
    """
    with small_blas():
        return _circle_scores(x, classes, n_classes, seed, test_size, plane, n_controls, split)


def _circle_scores(x, classes, n_classes, seed, test_size, plane, n_controls, split) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    classes = np.asarray(classes)
    if x.ndim != 2 or len(x) != len(classes):
        raise SpectrascopeError(f"got {len(classes)} class labels for activations of shape {x.shape}")
    if not np.issubdtype(classes.dtype, np.integer) or classes.min() < 0 or classes.max() >= n_classes:
        raise SpectrascopeError(f"circle classes must be integers in 0..{n_classes - 1}")
    train, test = split if split is not None else split_indices(len(x), test_size, seed, stratify=classes)
    fitted = fit_plane(x[train], classes[train], n_classes, plane)
    z_train, z_test = fitted.project(x[train]), fitted.project(x[test])

    def held_out_r2(assignment: np.ndarray) -> float:
        target_train = calendar_angles(assignment[classes[train]], n_classes)
        target_test = calendar_angles(assignment[classes[test]], n_classes)
        design = np.hstack([z_train, np.ones((len(z_train), 1))])
        coef, *_ = np.linalg.lstsq(design, target_train, rcond=None)
        predicted = np.hstack([z_test, np.ones((len(z_test), 1))]) @ coef
        return r2_score(target_test, predicted)

    rng = np.random.default_rng(seed + 7919)
    identity = np.arange(n_classes)
    controls = [held_out_r2(rng.permutation(n_classes)) for _ in range(max(1, n_controls))]
    coords = fitted.class_coords[np.isfinite(fitted.angles)]
    radii = np.linalg.norm(coords - coords.mean(axis=0), axis=1)
    return {
        "circle_r2": held_out_r2(identity),
        "circle_r2_control": float(np.mean(controls)),
        "order_score": order_score(fitted.angles),
        "order_chance": 2.0 / (n_classes - 1),
        "radius_cv": float(radii.std() / radii.mean()) if radii.mean() > 0 else float("nan"),
    }


# ----------------------------------------------------------------------------- the calendar experiment

#: Columns of :func:`calendar_experiment`.
CALENDAR_COLUMNS: dict[str, str] = {
    "layer": "layer index",
    "target": "'month' (12 classes) or 'weekday' (7)",
    "accuracy": "held-out accuracy of a logistic probe for the class",
    "control_accuracy": "held-out accuracy of the control task (see ``control``)",
    "selectivity": "accuracy - control_accuracy",
    "control": "'types' at the word (each word type a random label: the class is the token there, so "
    "selectivity is ~0 by construction) or 'shuffle' at the last token (every text ends in the same "
    "token: no type to memorize, so the control is shuffled labels and selectivity is accuracy minus chance)",
    "chance": "held-out share of the most frequent class",
    **CIRCLE_COLUMNS,
    "n_train": "training examples",
    "n_test": "held-out examples",
}


def calendar_experiment(
    model,
    max_texts: int = 240,
    seed: int = 0,
    targets: tuple[str, ...] = ("month", "weekday"),
    layers=None,
    position: str = "word",
    site: str = "resid_post",
    plane: str = "lda",
    test_size: float = 0.25,
    batch_size: int = 32,
    l2: float = 1.0,
) -> pd.DataFrame:
    """Month and weekday identity and their circular structure, layer by layer.

    For each target, :func:`calendar_texts` (``max_texts`` texts, balanced), the
    activations at the month/weekday word (``position="word"``) or at the last token
    (``"last"``), then per layer a logistic probe (:func:`~spectrascope.mech.probes.probe_layer`)
    and :func:`circle_scores` on the same seeded split. The probe's control task is Hewitt &
    Liang's type-level control at the word (the type is the word) and shuffled labels at the last
    token, where every text has the same token (see :data:`CALENDAR_COLUMNS`).

    Returns:
        a DataFrame with one row per (target, layer) and the columns of :data:`CALENDAR_COLUMNS`.
    """
    from ..models.handle import as_model
    from .activation_cache import collect_activations
    from .probes import probe_layer

    model = as_model(model)
    rows = []
    for target in targets:
        texts, classes, words = calendar_texts(target, max_texts, seed, position)
        n_classes = len(calendar_targets()[target][1])
        acts = collect_activations(
            model,
            texts,
            site=site,
            position=words if position == "word" else "last",
            layers=layers,
            batch_size=batch_size,
        )
        split = split_indices(len(texts), test_size, seed, stratify=classes)
        for layer, x in acts.items():
            control = {"control": "types", "control_types": words} if position == "word" else {"control": "shuffle"}
            probe = probe_layer(x, classes, "logistic", seed=seed, test_size=test_size, l2=l2, **control)
            circle = circle_scores(x, classes, n_classes, seed=seed, plane=plane, split=split)
            rows.append({"layer": layer, "target": target, **probe, **circle})
    frame = pd.DataFrame(rows)
    return frame[list(CALENDAR_COLUMNS)]
