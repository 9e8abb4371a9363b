"""Linear probes on cached activations, layer by layer, with a control task.

Two probes, both fitted on standardized features (train mean and standard deviation):

- **ridge** (:func:`fit_ridge`): least squares with an L2 penalty on continuous targets
  (one or several columns) or on one-hot class targets (prediction = the largest
  output); the penalty is chosen per fit from a grid by exact leave-one-out error on the
  training set (computed from one SVD);
- **logistic** (:func:`fit_logistic`): multinomial logistic regression with an L2 penalty,
  fitted by L-BFGS (scipy) in float64. The penalty follows scikit-learn's convention:
  minimize ``sum_i CE_i + l2 / 2 * ||W||^2`` (``l2 = 1`` is scikit-learn's ``C = 1``); the
  intercept is not penalized. When there are fewer training examples than features the
  fit runs in the span of the training activations, which gives the same solution.

Accuracy alone does not show that a layer *represents* a property: a flexible probe can
memorize. Every score comes with a **control task** fitted and scored the same way, and
``selectivity = accuracy - control_accuracy`` (Hewitt & Liang 2019):

- ``control="types"`` (default): Hewitt & Liang's control task: each input *type*
  (``control_types``, one per example: normally the token at the probed position) gets one
  random label, drawn from the label distribution, consistently across its examples. A probe
  that merely memorizes types scores as high on the control as on the task, so its
  selectivity is near 0; selectivity is high only when the representation carries the
  property beyond the identity of the token it sits on. Needs at least two distinct types.
- ``control="shuffle"``: the labels permuted across examples (same label distribution, no
  relation to the inputs); control accuracy ~ chance, so selectivity is accuracy minus chance
  for *any* probe, memorizer or not (a pure type memorizer scores ~0.7 here and ~0 with
  ``types``). Use it only where there is no type to memorize (e.g. every example is probed
  at the same token, or at a mean over tokens), and say so: the ``control`` column records
  which control each row used.

The held-out split is seeded and stratified by class for classification.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

from ..errors import SpectrascopeError

#: Ridge penalties tried by leave-one-out on standardized features.
RIDGE_ALPHAS: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)

#: Columns of :func:`probe_layers`.
PROBE_COLUMNS: dict[str, str] = {
    "layer": "layer index (the key of the activation dict)",
    "metric": "'accuracy' (classification) or 'r2' (continuous ridge targets)",
    "accuracy": "held-out accuracy, or held-out R^2 for continuous targets",
    "control_accuracy": "the same for the control task (mean over n_controls controls)",
    "selectivity": "accuracy - control_accuracy",
    "control": "the control task: 'types' (Hewitt & Liang, one random label per input type) or 'shuffle'",
    "train_accuracy": "accuracy (or R^2) on the training split",
    "chance": "held-out share of the most frequent training class (0 for R^2)",
    "n_train": "training examples",
    "n_test": "held-out examples",
    "n_classes": "classes (0 for continuous targets)",
    "d": "feature dimension",
}

_STD_FLOOR = 1e-6


@contextmanager
def small_blas() -> Iterator[None]:
    """One BLAS thread for the small matrices of a probe fit (when ``threadpoolctl`` is installed).

    Probe problems (hundreds of rows) gain nothing from BLAS threads, and on a busy
    machine OpenBLAS's spinning threads made a fit 20-80 times slower (measured).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the fit only runs slower on a busy machine
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@dataclass
class Standardizer:
    """``(x - mean) / std`` with statistics of the training rows; constant features are left centered."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        x = np.asarray(x, dtype=np.float64)
        std = x.std(axis=0)
        scale = max(float(std.max(initial=0.0)), 1.0) * _STD_FLOOR
        return cls(mean=x.mean(axis=0), std=np.where(std > scale, std, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std


@dataclass
class RidgeProbe:
    """A fitted ridge map ``y = x @ coef + intercept`` in the units of the raw features.

    Attributes:
        coef: (d, k) weights on raw features.
        intercept: (k,).
        alpha: the penalty chosen (on standardized features).
        squeeze: whether the target was 1-D (``predict`` then returns (n,)).
    """

    coef: np.ndarray
    intercept: np.ndarray
    alpha: float
    squeeze: bool = False

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, k) predictions ((n,) for a 1-D target) of (n, d) activations."""
        y = np.asarray(x, dtype=np.float64) @ self.coef + self.intercept
        return y[:, 0] if self.squeeze else y


@dataclass
class LogisticProbe:
    """A fitted multinomial logistic probe on raw features: ``logits = x @ coef + intercept``.

    Attributes:
        coef: (d, n_classes) weights on raw features.
        intercept: (n_classes,).
        l2: the penalty it was fitted with.
        converged: whether L-BFGS met its tolerance.
    """

    coef: np.ndarray
    intercept: np.ndarray
    l2: float
    converged: bool

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n, n_classes) logits of (n, d) activations."""
        return np.asarray(x, dtype=np.float64) @ self.coef + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n,) predicted class indices."""
        return self.logits(x).argmax(axis=1)


def fit_ridge(x: np.ndarray, y: np.ndarray, alphas: Sequence[float] | float = RIDGE_ALPHAS) -> RidgeProbe:
    """Ridge regression of ``y`` (n,) or (n, k) on ``x`` (n, d), penalty chosen by leave-one-out.

    Features are standardized and targets centered; the penalty ``alpha`` (on the
    standardized scale) minimizes the exact leave-one-out squared error over ``alphas``.
    """
    with small_blas():
        return _fit_ridge(x, y, alphas)


def _fit_ridge(x: np.ndarray, y: np.ndarray, alphas: Sequence[float] | float) -> RidgeProbe:
    x = _matrix(x, "x")
    y_arr = np.asarray(y, dtype=np.float64)
    squeeze = y_arr.ndim == 1
    y2 = y_arr[:, None] if squeeze else y_arr
    if y2.ndim != 2 or len(y2) != len(x):
        raise SpectrascopeError(f"ridge targets have shape {y_arr.shape}; expected ({len(x)},) or ({len(x)}, k)")
    scaler = Standardizer.fit(x)
    xs = scaler(x)
    y_mean = y2.mean(axis=0)
    yc = y2 - y_mean
    u, s, vt = np.linalg.svd(xs, full_matrices=False)
    uty = u.T @ yc
    candidates = [float(a) for a in alphas] if isinstance(alphas, Iterable) else [float(alphas)]
    best_alpha, best_err = candidates[0], np.inf
    for alpha in candidates:
        if len(candidates) == 1:
            break
        shrink = s**2 / (s**2 + alpha)
        fitted = u @ (shrink[:, None] * uty)
        leverage = (u**2) @ shrink + 1.0 / len(x)  # + centering
        residual = (yc - fitted) / np.maximum(1.0 - leverage, 1e-9)[:, None]
        err = float((residual**2).mean())
        if err < best_err:
            best_alpha, best_err = alpha, err
    coef_std = vt.T @ ((s / (s**2 + best_alpha))[:, None] * uty)  # (d, k)
    coef = coef_std / scaler.std[:, None]
    intercept = y_mean - scaler.mean @ coef
    return RidgeProbe(coef=coef, intercept=intercept, alpha=best_alpha, squeeze=squeeze)


def fit_logistic(
    x: np.ndarray, y: np.ndarray, n_classes: int | None = None, l2: float = 1.0, max_iter: int = 500
) -> LogisticProbe:
    """Multinomial logistic regression of class indices ``y`` (n,) on ``x`` (n, d).

    Minimizes ``sum_i CE_i + l2 / 2 * ||W||^2`` over standardized features with L-BFGS;
    classes absent from ``y`` get a logit that the fit drives down.
    """
    with small_blas():
        return _fit_logistic(x, y, n_classes, l2, max_iter)


def _fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int | None, l2: float, max_iter: int) -> LogisticProbe:
    x = _matrix(x, "x")
    y = np.asarray(y)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise SpectrascopeError(f"logistic targets must be ({len(x)},) class indices >= 0")
    if l2 <= 0:
        raise SpectrascopeError(f"the logistic L2 penalty must be positive (got {l2})")
    k = int(n_classes if n_classes is not None else y.max() + 1)
    scaler = Standardizer.fit(x)
    xs = scaler(x)
    n, d = xs.shape
    basis = None
    if d > n:  # the optimum lies in the row space of xs: solve there (same solution, smaller problem)
        _, s, vt = np.linalg.svd(xs, full_matrices=False)
        keep = s > s.max(initial=0.0) * 1e-10
        basis = vt[keep].T  # (d, r)
        xs = xs @ basis
    r = xs.shape[1]
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: r * k].reshape(r, k)
        b = theta[r * k :]
        logits = xs @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1, keepdims=True))
        log_p = logits - log_norm
        loss = -(onehot * log_p).sum() + 0.5 * l2 * (w**2).sum()
        delta = np.exp(log_p) - onehot
        grad_w = xs.T @ delta + l2 * w
        return loss, np.concatenate([grad_w.ravel(), delta.sum(axis=0)])

    result = optimize.minimize(
        loss_grad,
        np.zeros(r * k + k),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": 1e-6},
    )
    w = result.x[: r * k].reshape(r, k)
    if basis is not None:
        w = basis @ w
    coef = w / scaler.std[:, None]
    intercept = result.x[r * k :] - scaler.mean @ coef
    return LogisticProbe(coef=coef, intercept=intercept, l2=l2, converged=bool(result.success))


def split_indices(
    n: int, test_size: float = 0.25, seed: int = 0, stratify: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, test) index arrays; with ``stratify`` each class is split in proportion.

    A class with a single example goes to the training split; every split is non-empty.
    """
    if not 0 < test_size < 1:
        raise SpectrascopeError(f"test_size must be between 0 and 1 (got {test_size})")
    if n < 4:
        raise SpectrascopeError(f"a probe needs at least 4 examples (got {n})")
    rng = np.random.default_rng(seed)
    if stratify is None:
        order = rng.permutation(n)
        n_test = min(max(1, round(n * test_size)), n - 1)
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    train: list[int] = []
    test: list[int] = []
    for cls in np.unique(stratify):
        members = rng.permutation(np.flatnonzero(stratify == cls))
        n_test = round(len(members) * test_size) if len(members) > 1 else 0
        n_test = min(max(n_test, 1 if len(members) > 1 else 0), len(members) - 1)
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    if not test:
        raise SpectrascopeError("no class has two examples: cannot hold any out for testing")
    return np.sort(np.array(train)), np.sort(np.array(test))


def control_labels(labels: np.ndarray, seed: int = 0, types: Sequence[Any] | None = None) -> np.ndarray:
    """Control-task labels: ``labels`` permuted, or (with ``types``) one random label per input type.

    With ``types`` (one per example), each distinct type gets a label drawn from the
    empirical distribution of ``labels`` (Hewitt & Liang's control task).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if types is None:
        return labels[rng.permutation(len(labels))]
    type_array = np.asarray(list(types), dtype=object)
    if len(type_array) != len(labels):
        raise SpectrascopeError(
            f"got {len(type_array)} control types for {len(labels)} labels: give one type per example"
        )
    _, type_index = np.unique(type_array.astype(str), return_inverse=True)
    drawn = labels[rng.integers(0, len(labels), size=type_index.max() + 1)]
    return drawn[type_index]


def probe_layer(
    x: np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    kind: str = "logistic",
    seed: int = 0,
    test_size: float = 0.25,
    control: str = "types",
    control_types: Sequence[Any] | None = None,
    n_controls: int = 1,
    l2: float = 1.0,
    alphas: Sequence[float] | float = RIDGE_ALPHAS,
) -> dict[str, Any]:
    """Fit and score one probe and its control task on (n, d) activations ``x``; one row of :func:`probe_layers`."""
    x = _matrix(x, "activations")
    target, classes, metric = _targets(labels, kind, len(x))
    train, test = split_indices(len(x), test_size, seed, stratify=target if classes is not None else None)
    _check_control(control, control_types, len(x))

    def score(y: np.ndarray) -> tuple[float, float]:
        if kind == "logistic":
            assert classes is not None  # _targets gives class values for every logistic probe
            logistic = fit_logistic(x[train], y[train], n_classes=len(classes), l2=l2)
            return _accuracy(logistic.predict(x[train]), y[train]), _accuracy(logistic.predict(x[test]), y[test])
        fit_y = _onehot(y, len(classes)) if classes is not None else y
        ridge = fit_ridge(x[train], fit_y[train], alphas)
        if classes is not None:
            return (
                _accuracy(ridge.predict(x[train]).argmax(1), y[train]),
                _accuracy(ridge.predict(x[test]).argmax(1), y[test]),
            )
        return r2_score(fit_y[train], ridge.predict(x[train])), r2_score(fit_y[test], ridge.predict(x[test]))

    train_score, test_score = score(target)
    controls = []
    for repeat in range(max(1, n_controls)):
        controls.append(score(_control(target, control, control_types, seed + 1000 + repeat))[1])
    control_score = float(np.mean(controls))
    chance = 0.0
    if classes is not None:
        majority = np.bincount(target[train], minlength=len(classes)).argmax()
        chance = float(np.mean(target[test] == majority))
    return {
        "metric": metric,
        "accuracy": test_score,
        "control_accuracy": control_score,
        "selectivity": test_score - control_score,
        "control": control,
        "train_accuracy": train_score,
        "chance": chance,
        "n_train": len(train),
        "n_test": len(test),
        "n_classes": 0 if classes is None else len(classes),
        "d": x.shape[1],
    }


def probe_layers(
    acts: Mapping[int, np.ndarray] | np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    kind: str = "logistic",
    seed: int = 0,
    test_size: float = 0.25,
    control: str = "types",
    control_types: Sequence[Any] | None = None,
    n_controls: int = 1,
    l2: float = 1.0,
    alphas: Sequence[float] | float = RIDGE_ALPHAS,
) -> pd.DataFrame:
    """Probe every layer's activations for ``labels``; one row per layer (:data:`PROBE_COLUMNS`).

    Args:
        acts: ``{layer: (n, d) array}`` (as :func:`~spectrascope.mech.activation_cache.collect_activations`
            returns) or one (n, d) array (layer 0).
        labels: n labels. ``kind="logistic"``: class labels (any hashable values).
            ``kind="ridge"``: class labels (ints, strings, bools: one-hot targets, scored by
            accuracy of the largest output) or float targets, (n,) or (n, k) (scored by R^2).
        kind: ``"logistic"`` or ``"ridge"``.
        seed: fixes the split and the control labels; every layer uses the same split.
        test_size: held-out share.
        control: ``"types"`` (default; needs ``control_types``) or ``"shuffle"``; see the module doc.
        control_types: one input type per example (the token at the probed position) for
            ``control="types"``.
        n_controls: control tasks averaged (different seeds).
        l2: logistic penalty (scikit-learn's 1 / C).
        alphas: ridge penalties tried (leave-one-out choice) or one penalty.

    Raises:
        SpectrascopeError: labels of the wrong length, missing labels, fewer than two
            classes, an unknown ``kind`` or ``control``.
    """
    if isinstance(acts, np.ndarray):
        acts = {0: acts}
    if not acts:
        raise SpectrascopeError("no activations to probe")
    rows = []
    for layer, x in acts.items():
        row = probe_layer(x, labels, kind, seed, test_size, control, control_types, n_controls, l2, alphas)
        rows.append({"layer": layer, **row})
    return pd.DataFrame(rows, columns=list(PROBE_COLUMNS))


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination over all target columns together: 1 - SS_res / SS_tot."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    ss_tot = float(((y_true - y_true.mean(axis=0)) ** 2).sum())
    ss_res = float(((y_true - y_pred) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


# ----------------------------------------------------------------------------- helpers


def _matrix(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise SpectrascopeError(f"{what} must be a non-empty (n, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise SpectrascopeError(f"{what} contain NaN or infinite values")
    return x


def _targets(labels: Any, kind: str, n: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(target array, class values or None, metric name); class targets are indices 0..C-1."""
    if kind not in ("logistic", "ridge"):
        raise SpectrascopeError(f"unknown probe kind {kind!r}: use 'logistic' or 'ridge'")
    values = labels.to_numpy() if isinstance(labels, pd.Series | pd.DataFrame) else np.asarray(labels)
    if values.ndim == 0 or len(values) != n:
        got = "a scalar" if values.ndim == 0 else f"{len(values)} labels"
        raise SpectrascopeError(f"got {got} for {n} examples: the labels must have one entry per activation row")
    if pd.isna(pd.DataFrame(values.reshape(n, -1))).to_numpy().any():
        raise SpectrascopeError("the labels contain missing values (NaN/NA): drop those examples first")
    continuous = values.dtype.kind == "f" and (kind == "ridge" or values.ndim > 1)
    if kind == "ridge" and continuous:
        return values.astype(np.float64), None, "r2"
    if values.ndim != 1:
        raise SpectrascopeError(f"class labels must be one per example (1-D), got shape {values.shape}")
    classes, index = np.unique(values.astype(object) if values.dtype.kind == "O" else values, return_inverse=True)
    if len(classes) < 2:
        raise SpectrascopeError(f"the labels have a single class ({classes[0]!r}): nothing to probe")
    return index.astype(np.int64), classes, "accuracy"


def _check_control(control: str, types: Sequence[Any] | None, n: int) -> None:
    """One clear line for a control task that cannot be run."""
    if control == "shuffle":
        return
    if control != "types":
        raise SpectrascopeError(f"unknown control task {control!r}: use 'types' or 'shuffle'")
    if types is None:
        raise SpectrascopeError(
            "control='types' (the default, Hewitt & Liang) needs control_types: one input type per example, "
            "e.g. the token at the probed position; pass control='shuffle' only where there is no type to memorize"
        )
    distinct = len({str(t) for t in types})
    if len(types) == n and distinct < 2:
        raise SpectrascopeError(
            "control='types' needs at least two distinct input types (every example has the same one, so there is "
            "nothing to memorize); use control='shuffle'"
        )


def _control(target: np.ndarray, control: str, types: Sequence[Any] | None, seed: int) -> np.ndarray:
    if control == "shuffle":
        return control_labels(target, seed)
    return control_labels(target, seed, types)


def _onehot(y: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(y), k))
    out[np.arange(len(y)), y] = 1.0
    return out


def _accuracy(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.asarray(predicted) == np.asarray(actual)))
