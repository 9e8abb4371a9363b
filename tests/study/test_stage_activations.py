"""The activations stage's CKA tables: the robust view, made by zeroing excluded channels in
place, equals CKA with those channels left out; the adjacent median carries its jackknife interval."""

import numpy as np
import pytest

from spectrascope.bridge.cka import cka
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
