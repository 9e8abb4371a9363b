"""The activations stage's CKA tables: the robust view, made by zeroing excluded channels in
place, equals CKA with those channels left out; the adjacent median carries its jackknife interval."""

import numpy as np
import pytest

from spectrascope.bridge.cka import cka, cka_without_top_tokens
from spectrascope.study.stages.activations import _cka_tables


def test_robust_cka_by_zeroed_channels_equals_leaving_them_out():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((200, 12)).astype(np.float32)
    sites = ["a", "b", "c"]
    pooled = {
        s: (base @ rng.standard_normal((12, 12)) + rng.standard_normal((200, 12))).astype(np.float32) for s in sites
    }
    for s in sites:
        pooled[s][:, 3] *= 50.0  # a massive channel
    excluded = {s: np.array([3, 7]) for s in sites}
    kept = [c for c in range(12) if c not in (3, 7)]
    dropped = {s: pooled[s][:, kept].copy() for s in sites}
    raw = {s: pooled[s].copy() for s in sites}
    table, null, medians = _cka_tables(pooled, excluded, sites, seed=0)
    robust = table[table["variant"] == "robust"].set_index(["layer_a", "layer_b"])["cka"]
    rawt = table[table["variant"] == "raw"].set_index(["layer_a", "layer_b"])["cka"]
    assert robust[(0, 1)] == pytest.approx(cka(dropped["a"], dropped["b"]), rel=1e-5)
    assert robust[(1, 2)] == pytest.approx(cka(dropped["b"], dropped["c"]), rel=1e-5)
    assert rawt[(0, 2)] == pytest.approx(cka(raw["a"], raw["c"]), rel=1e-5)
    assert list(medians["variant"]) == ["raw", "robust"] and (medians["n_pairs"] == 2).all()
    assert (medians["cka_lo"] <= medians["cka"]).all() and (medians["cka"] <= medians["cka_hi"]).all()
    assert len(null) == 4


def test_robust_cka_leaves_the_union_of_every_layers_channels_out_of_every_layer():
    # channel 3 dominates every layer but is flagged only at layer a; the robust view must not
    # compare layer a without it against layer b with it
    rng = np.random.default_rng(1)
    base = rng.standard_normal((300, 10))
    sites = ["a", "b", "c"]
    pooled = {s: (base @ rng.standard_normal((10, 10)) + 0.3 * rng.standard_normal((300, 10))) for s in sites}
    spike = 100.0 * rng.standard_normal(300)
    for s in sites:
        pooled[s][:, 3] = spike
        pooled[s] = pooled[s].astype(np.float32)
    excluded = {"a": np.array([3]), "b": np.array([7]), "c": np.array([], dtype=np.int64)}
    kept = [c for c in range(10) if c not in (3, 7)]  # the union {3, 7}, at every layer
    table, _, _ = _cka_tables(pooled, excluded, sites, seed=0)
    robust = table[table["variant"] == "robust"].set_index(["layer_a", "layer_b"])["cka"]
    assert robust[(0, 1)] == pytest.approx(cka(pooled["a"][:, kept], pooled["b"][:, kept]), rel=1e-5)
    assert robust[(1, 2)] == pytest.approx(cka(pooled["b"][:, kept], pooled["c"][:, kept]), rel=1e-5)
    assert set(table.loc[table["variant"] == "robust", "n_excluded"]) == {2}
    assert set(table.loc[table["variant"] == "raw", "n_excluded"]) == {0}


def test_the_adjacent_medians_check_their_lowest_pair_without_its_top_tokens():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((400, 10))
    rotations = [np.linalg.qr(rng.standard_normal((10, 10)))[0] for _ in range(3)]
    pooled = {s: (base @ q).astype(np.float32) for s, q in zip(["a", "b", "c"], rotations, strict=True)}
    pooled["c"][:4] = (300.0 * rng.standard_normal((4, 10))).astype(np.float32)  # layers 1 to 2 drop
    excluded = {s: np.array([9]) for s in pooled}
    _, _, medians = _cka_tables(pooled, excluded, ["a", "b", "c"], seed=0)
    robust = medians.set_index("variant").loc["robust"]
    assert robust["lowest_layer_a"] == 1
    expected, n_left_out = cka_without_top_tokens(pooled["b"][:, :9], pooled["c"][:, :9])
    assert robust["lowest_cka_without_top_tokens"] == pytest.approx(expected)
    assert robust["n_top_tokens"] == n_left_out == 4
    assert robust["lowest_cka"] < 0.5 < robust["lowest_cka_without_top_tokens"]
