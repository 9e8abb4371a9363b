import numpy as np
import pytest

from spectrascope.bridge.alignment import alignment_table, cka_matrix, subspace_overlap
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


def test_cka_matrix():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 10))
    R = np.linalg.qr(rng.standard_normal((10, 10)))[0]
    m = cka_matrix({0: X, 1: X @ R, 2: rng.standard_normal((500, 10))})
    assert len(m) == 9 and m.query("layer_a == 0 and layer_b == 1")["cka"].item() == pytest.approx(1.0)
    assert abs(m.query("layer_a == 0 and layer_b == 2")["cka"].item()) < 0.05
    assert m.query("layer_a == 2 and layer_b == 2")["cka"].item() == pytest.approx(1.0)


def test_folding_the_norm_gain_finds_a_reader_that_the_raw_matrix_hides():
    """A writer adds direction u to the residual stream; the reader after an RMSNorm with a
    strongly non-unit gain g has rows proportional to u / g, so it responds to u (its folded
    matrix W diag(g) reads u) although its raw right singular vector is u / g."""
    from spectrascope.bridge.norm_folding import ReaderNorm, fold_norm
    from spectrascope.bridge.subspaces import matrix_subspaces

    rng = np.random.default_rng(3)
    d = 64
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    g = np.exp(rng.normal(0, 1.5, d))  # gains spread over ~two orders of magnitude
    writer = np.outer(u, rng.standard_normal(d)) * 20 + rng.standard_normal((d, d)) * 0.1
    reader = np.outer(rng.standard_normal(16), u / g) * 20 + rng.standard_normal((16, d)) * 0.01
    roles = {"w": (0, "o"), "r": (1, "q")}
    raw = alignment_table({"w": matrix_subspaces(writer), "r": matrix_subspaces(reader)}, roles)
    folded_reader = fold_norm(reader, ReaderNorm(gain=g, centers=False))
    folded = alignment_table({"w": matrix_subspaces(writer), "r": matrix_subspaces(folded_reader)}, roles)
    top_w = matrix_subspaces(writer).U[:, 0]
    top_r_folded = matrix_subspaces(folded_reader).Vt[0]
    assert abs(top_w @ top_r_folded) > 0.99
    assert abs(top_w @ matrix_subspaces(reader).Vt[0]) < 0.8
    assert folded["overlap"].item() > raw["overlap"].item()


def test_layernorm_folding_removes_the_mean_direction():
    from spectrascope.bridge.norm_folding import ReaderNorm, fold_norm

    W = np.arange(12.0).reshape(3, 4)
    folded = fold_norm(W, ReaderNorm(gain=np.array([1.0, 2.0, 3.0, 4.0]), centers=True))
    expected = (W * [1, 2, 3, 4]) @ (np.eye(4) - np.ones((4, 4)) / 4)
    np.testing.assert_allclose(folded, expected)
    np.testing.assert_allclose(folded @ np.ones(4), 0.0, atol=1e-12)


def test_reader_norm_of_a_llama_reader_is_its_blocks_norm():
    import torch
    import transformers

    from spectrascope.bridge.norm_folding import reader_norm

    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
    )
    hf = transformers.LlamaForCausalLM(cfg).eval()
    layer = hf.model.layers[1]
    with torch.no_grad():
        layer.input_layernorm.weight.copy_(torch.arange(1.0, 33.0))
    q = reader_norm(hf, "model.layers.1.self_attn.q_proj.weight", "q")
    up = reader_norm(hf, "model.layers.1.mlp.up_proj.weight", "mlp_up")
    np.testing.assert_array_equal(q.gain, np.arange(1.0, 33.0))
    np.testing.assert_array_equal(up.gain, layer.post_attention_layernorm.weight.detach().numpy())
    assert reader_norm(hf, "model.layers.1.self_attn.o_proj.weight", "o") is None
