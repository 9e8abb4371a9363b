import numpy as np
import pytest

from spectrascope.bridge.alignment import alignment_table, cka_matrix, linear_cka, subspace_overlap
from spectrascope.bridge.subspaces import MatrixSubspaces


def test_subspace_overlap_by_hand():
    I = np.eye(4)
    assert subspace_overlap(I[:, :2], I[:, :2]) == pytest.approx(1.0)
    assert subspace_overlap(I[:, :2], I[:, 2:]) == pytest.approx(0.0)
    # a 45-degree vector against e1: cos^2 = 1/2
    v = np.array([[1.0], [1.0], [0.0], [0.0]]) / np.sqrt(2)
    assert subspace_overlap(I[:, :1], v) == pytest.approx(0.5)


def _sub(U, Vt, n_tail):
    s = np.linspace(10, 1, U.shape[1])
    return MatrixSubspaces(U, s, Vt, n_tail, n_tail, 3.0, 1.0)


def test_alignment_table_finds_the_planted_writer_reader_pair():
    rng = np.random.default_rng(0)
    d = 64
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    writer = _sub(Q, Q.T, 4)  # writes Q[:, :4]
    aligned = _sub(Q, Q.T, 4)  # reads Q[:, :4]
    R = np.linalg.qr(rng.standard_normal((d, d)))[0]
    unaligned = _sub(R, R.T, 4)
    roles = {"w": (0, "o"), "a": (1, "q"), "u": (1, "k"), "early": (0, "v")}
    table = alignment_table({"w": writer, "a": aligned, "u": unaligned, "early": aligned}, roles)
    by = table.set_index("reader")
    assert "early" not in by.index  # only later layers read
    assert by.loc["a", "overlap"] == pytest.approx(1.0)
    assert by.loc["u", "overlap"] < 0.3
    assert by.loc["a", "random_overlap"] == pytest.approx(4 / 64)


def test_linear_cka():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 10))
    R = np.linalg.qr(rng.standard_normal((10, 10)))[0]
    assert linear_cka(X, X @ R * 3 + 1) == pytest.approx(1.0)  # invariant to rotation, scale, shift
    assert linear_cka(X, rng.standard_normal((500, 10))) < 0.1
    m = cka_matrix({0: X, 1: X @ R, 2: rng.standard_normal((500, 10))})
    assert len(m) == 9 and m.query("layer_a == 0 and layer_b == 1")["cka"].item() == pytest.approx(1.0)
