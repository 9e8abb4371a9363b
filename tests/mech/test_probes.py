"""Linear probes (ridge, logistic, control task) on synthetic activations with known answers,
and per-example activation collection on a tiny random Llama."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
import torch

from spectrascope.errors import SpectrascopeError
from spectrascope.mech.activation_cache import collect_activations
from spectrascope.mech.probes import (
    PROBE_COLUMNS,
    control_labels,
    fit_logistic,
    fit_ridge,
    probe_layers,
    r2_score,
    split_indices,
)
from spectrascope.trace import run_with_cache

N_CLASSES = 6


def encoded_layers(n: int = 600, d: int = 40, seed: int = 0) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Layer 0: class k is 4 units along the k-th direction of a known 6-D subspace, plus unit noise; layer 1: noise only."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, n)
    basis = np.linalg.qr(rng.normal(size=(d, N_CLASSES)))[0]  # (d, 6) orthonormal
    encoded = 4.0 * basis.T[labels] + rng.normal(size=(n, d))
    return {0: encoded, 1: rng.normal(size=(n, d)) * 5.0}, labels


# ----------------------------------------------------------------------------- probes


def test_logistic_finds_the_encoded_layer_and_control_is_chance() -> None:
    acts, labels = encoded_layers()
    df = probe_layers(acts, labels, kind="logistic", seed=0, n_controls=3, control="shuffle")
    assert list(df.columns) == list(PROBE_COLUMNS)
    enc, noise = df.set_index("layer").loc[0], df.set_index("layer").loc[1]
    chance = 1 / N_CLASSES
    assert enc.accuracy > 0.95
    assert enc.control_accuracy < chance + 0.1
    assert enc.selectivity > 0.75
    assert noise.accuracy < chance + 0.1
    assert abs(noise.selectivity) < 0.2
    assert enc.n_train + enc.n_test == len(labels) and enc.n_classes == N_CLASSES and enc.metric == "accuracy"


def test_probe_layers_is_seeded() -> None:
    acts, labels = encoded_layers()
    a = probe_layers(acts, labels, seed=3, control="shuffle")
    pd.testing.assert_frame_equal(a, probe_layers(acts, labels, seed=3, control="shuffle"))


def test_string_labels_and_ridge_classification() -> None:
    acts, labels = encoded_layers()
    names = np.array(["a", "b", "c", "d", "e", "f"])[labels]
    df = probe_layers(acts, list(names), kind="ridge", seed=0, control="shuffle").set_index("layer")
    assert df.loc[0, "metric"] == "accuracy"
    assert df.loc[0, "accuracy"] > 0.9 and df.loc[0, "selectivity"] > 0.65
    assert df.loc[1, "accuracy"] < 0.3


def test_ridge_recovers_a_known_linear_map() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 8)) * rng.uniform(0.5, 20, size=8)  # unequal feature scales
    coef = rng.normal(size=(8, 3))
    intercept = np.array([1.0, -2.0, 0.5])
    y = x @ coef + intercept + 0.01 * rng.normal(size=(400, 3))
    probe = fit_ridge(x, y, alphas=(1e-6, 1e-3, 1.0, 100.0))
    np.testing.assert_allclose(probe.coef, coef, atol=2e-3)
    np.testing.assert_allclose(probe.intercept, intercept, atol=2e-2)
    assert probe.alpha <= 1e-3  # leave-one-out picks a small penalty for clean data
    df = probe_layers(x, y, kind="ridge", seed=0, control="shuffle")
    assert df.loc[0, "metric"] == "r2" and df.loc[0, "accuracy"] > 0.999
    assert df.loc[0, "control_accuracy"] < 0.05 and df.loc[0, "n_classes"] == 0


def test_ridge_leave_one_out_prefers_a_larger_penalty_for_noisy_targets() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 50))
    noisy = x[:, 0] + 5.0 * rng.normal(size=60)
    clean = x[:, 0] + 0.001 * rng.normal(size=60)
    assert fit_ridge(x, noisy).alpha > fit_ridge(x, clean).alpha
    assert fit_ridge(x, clean).predict(x).shape == (60,)


def test_logistic_is_stationary_when_features_outnumber_examples() -> None:
    """The fit in the span of the training rows (d > n) satisfies the full-dimensional optimality condition."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 80)) * 3 + 1
    y = rng.integers(0, 4, 30)
    probe = fit_logistic(x, y, n_classes=4, l2=0.5)
    assert probe.converged
    mean, std = x.mean(0), x.std(0)
    w = probe.coef * std[:, None]  # weights on standardized features
    xs = (x - mean) / std
    logits = xs @ w + (probe.intercept + mean @ probe.coef)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(4)[y]
    grad_w = xs.T @ (p - onehot) + 0.5 * w
    assert np.abs(grad_w).max() < 1e-3
    assert np.abs((p - onehot).sum(0)).max() < 1e-3
    np.testing.assert_array_equal(probe.predict(x), logits.argmax(1))


def test_stratified_split() -> None:
    labels = np.repeat(np.arange(4), [40, 20, 8, 1])
    train, test = split_indices(len(labels), 0.25, seed=0, stratify=labels)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(labels)
    assert [int((labels[test] == k).sum()) for k in range(4)] == [10, 5, 2, 0]
    again = split_indices(len(labels), 0.25, seed=0, stratify=labels)
    np.testing.assert_array_equal(train, again[0])


def test_control_labels() -> None:
    labels = np.repeat(np.arange(5), 20)
    shuffled = control_labels(labels, seed=0)
    assert sorted(shuffled) == sorted(labels) and not np.array_equal(shuffled, labels)
    types = np.tile(np.arange(10), 10)
    by_type = control_labels(labels, seed=0, types=types)
    for t in range(10):  # one label per type, consistently
        assert len(set(by_type[types == t])) == 1


def test_types_control_catches_a_probe_that_reads_the_input_type() -> None:
    """Label = a function of the token type: accuracy high, Hewitt-Liang control high too, selectivity low."""
    rng = np.random.default_rng(4)
    tokens = rng.integers(0, 20, 400)
    embed = rng.normal(size=(20, 30)) * 3
    x = embed[tokens] + 0.1 * rng.normal(size=(400, 30))
    labels = tokens % 3
    df = probe_layers(x, labels, control="types", control_types=tokens, n_controls=3)
    assert df.loc[0, "accuracy"] > 0.95
    assert df.loc[0, "control_accuracy"] > 0.8
    assert df.loc[0, "selectivity"] < 0.2


def test_a_pure_memorizer_shows_no_selectivity_by_default() -> None:
    """Labels assigned at random per word type (nothing to generalize, only types to memorize): the
    default control (Hewitt & Liang's type control) gives selectivity ~0; shuffled labels would
    credit the memorizer with accuracy minus chance (~0.7 here)."""
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, 40, 800)
    labels = rng.integers(0, 4, 40)[tokens]  # a random label per type
    x = rng.normal(size=(40, 64))[tokens] + 0.05 * rng.normal(size=(800, 64))
    default = probe_layers(x, labels, control_types=tokens, n_controls=3).loc[0]
    shuffled = probe_layers(x, labels, control="shuffle", n_controls=3).loc[0]
    assert default["control"] == "types" and default["accuracy"] > 0.95
    assert abs(default["selectivity"]) < 0.1
    assert shuffled["selectivity"] > 0.6


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros(599, dtype=int), "599 labels for 600 examples"),
        (np.zeros(601, dtype=int), "601 labels for 600 examples"),
        (np.zeros(600, dtype=int), "single class"),
        (np.r_[np.zeros(300), np.full(300, np.nan)], "missing values"),
    ],
)
def test_bad_labels_are_clear_errors(labels: np.ndarray, message: str) -> None:
    acts, _ = encoded_layers()
    with pytest.raises(SpectrascopeError, match=message):
        probe_layers(acts, labels)


def test_bad_options_are_clear_errors() -> None:
    acts, labels = encoded_layers()
    with pytest.raises(SpectrascopeError, match="unknown probe kind"):
        probe_layers(acts, labels, kind="svm")
    with pytest.raises(SpectrascopeError, match="unknown control task"):
        probe_layers(acts, labels, control="random")
    with pytest.raises(SpectrascopeError, match="needs control_types"):
        probe_layers(acts, labels, control="types")
    with pytest.raises(SpectrascopeError, match="needs control_types"):
        probe_layers(acts, labels)  # the default control needs the input types
    with pytest.raises(SpectrascopeError, match="at least two distinct input types"):
        probe_layers(acts, labels, control_types=["."] * len(labels))
    with pytest.raises(SpectrascopeError, match=r"\(n, d\) array"):
        probe_layers({0: np.zeros(600)}, labels)
    with pytest.raises(SpectrascopeError, match="test_size"):
        probe_layers(acts, labels, test_size=1.5)


def test_r2_score() -> None:
    y = np.array([[1.0, 2.0], [3.0, 5.0], [5.0, 1.0]])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.tile(y.mean(0), (3, 1))) == pytest.approx(0.0)


# ----------------------------------------------------------------------------- activation collection


TEXTS = ["Let's meet on Tuesday at noon.", "Hi", "The month after June is July and then August.", "May I come in May?"]


def _single(tiny: types.SimpleNamespace, text: str) -> dict[int, torch.Tensor]:
    """(pos, d) resid_post of one unpadded text, per layer."""
    ids = tiny.tokenizer(text, return_tensors="pt")["input_ids"]
    _, cache = run_with_cache(tiny.hf, ids, "resid_post")
    return {layer: cache[f"blocks.{layer}.hook_resid_post"][0] for layer in range(3)}


def test_last_position_under_right_padding_matches_single_texts(tiny) -> None:
    acts = collect_activations(tiny, TEXTS, position="last", batch_size=3)
    assert sorted(acts) == [0, 1, 2] and acts[0].shape == (4, 32) and acts[0].dtype == np.float32
    for i, text in enumerate(TEXTS):
        single = _single(tiny, text)
        for layer in range(3):
            np.testing.assert_allclose(acts[layer][i], single[layer][-1].numpy(), atol=1e-5)


def test_int_word_and_mean_positions(tiny) -> None:
    words = ["Tuesday", "Hi", "June", "May"]
    acts = collect_activations(tiny, TEXTS, position=words, layers=[1, -1], batch_size=2)
    assert sorted(acts) == [1, 2]
    for i, (text, word) in enumerate(zip(TEXTS, words, strict=True)):
        tokens = tiny.tokenizer(text)["input_ids"]
        index = tokens.index(tiny.tokenizer.convert_tokens_to_ids(word.lower()))  # first occurrence
        single = _single(tiny, text)
        np.testing.assert_allclose(acts[2][i], single[2][index].numpy(), atol=1e-5)
    second = collect_activations(tiny, TEXTS, position=1, layers=[0])[0]
    minus_two = collect_activations(tiny, TEXTS, position=-2, layers=[0])[0]
    mean = collect_activations(tiny, TEXTS, position="mean", layers=[0])[0]
    for i, text in enumerate(TEXTS):
        single = _single(tiny, text)[0]
        np.testing.assert_allclose(second[i], single[1].numpy(), atol=1e-5)
        np.testing.assert_allclose(minus_two[i], single[-2].numpy(), atol=1e-5)
        np.testing.assert_allclose(mean[i], single[1:].mean(0).numpy(), atol=1e-5)


def test_word_match_is_whole_word(tiny) -> None:
    with pytest.raises(SpectrascopeError, match="does not contain the word 'Mon'"):
        collect_activations(tiny, ["See you on Monday"], position="Mon")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"position": 50}, "outside text"),
        ({"position": ["last"]}, "1 positions for 4 texts"),
        ({"layers": [3]}, "layer 3 does not exist"),
        ({"site": "pattern"}, "not token vectors"),
        ({"site": "resid_fancy"}, "unknown site kind"),
    ],
)
def test_collect_errors(tiny, kwargs: dict, message: str) -> None:
    with pytest.raises(SpectrascopeError, match=message):
        collect_activations(tiny, TEXTS, **kwargs)


def test_collect_other_sites(tiny) -> None:
    z = collect_activations(tiny, TEXTS, site="z", layers=[0])[0]
    mlp = collect_activations(tiny, TEXTS, site="mlp_post", layers=[0])[0]
    assert z.shape == (4, 32) and mlp.shape == (4, 64)
