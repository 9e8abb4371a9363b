"""Parity with weightwatcher (the reference tool) on the real all-MiniLM-L6-v2 weights."""

import logging

import numpy as np
import pytest
from safetensors.torch import load_file

from spectrascope.models.zoo import bundled_path
from spectrascope.weights.api import analyze_weights

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def both():
    import weightwatcher as ww  # a test extra

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    path = bundled_path("minilm-l6")
    ref = ww.WeightWatcher(model=load_file(str(path / "model.safetensors"))).analyze(detX=True)
    ours = analyze_weights("minilm-l6", workers=2)
    return ref.assign(name=ref["name"] + ".weight").set_index("name"), ours.set_index("name")


def test_same_set_of_matrices(both):
    ref, ours = both
    assert set(ref.index) == set(ours.index[ours["status"] == "success"])
    assert len(ref) == 39


@pytest.mark.parametrize(
    "column, rel",
    [
        ("alpha", None),
        ("xmin", 1e-6),
        ("D", 1e-6),
        ("num_pl_spikes", 0),
        ("stable_rank", 1e-6),
        ("entropy", 1e-6),
        ("alpha_weighted", 1e-6),
        ("log_norm", 1e-6),
        ("log_spectral_norm", 1e-6),
        ("log_alpha_norm", 1e-6),
        ("sigma", 1e-6),
        ("xmax", 1e-6),
        ("matrix_rank", 0),
        ("lambda_max", 1e-6),
    ],
)
def test_columns_match(both, column, rel):
    ref, ours = both
    a, b = ours.loc[ref.index, column].astype(float), ref[column].astype(float)
    if rel is None:  # alpha: absolute tolerance 1e-6
        assert np.max(np.abs(a - b)) <= 1e-6
    else:
        np.testing.assert_allclose(a, b, rtol=rel, atol=0)


def test_erg_tail_size_matches_detx(both):
    ref, ours = both
    np.testing.assert_array_equal(ours.loc[ref.index, "erg_num"].astype(int), ref["detX_num"].astype(int))


def test_warnings_match(both):
    ref, ours = both
    np.testing.assert_array_equal(ours.loc[ref.index, "warning"].values, ref["warning"].replace("success", "").values)
