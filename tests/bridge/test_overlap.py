"""Eigenmode overlap: per-text sums reproduce the covariance formula, planted domains, the
random baseline, the robust variant, intervals over texts."""

import numpy as np
import pytest
import torch
from torch import nn

from spectrascope.bridge.input_shares import InputShares
from spectrascope.bridge.overlap import mode_table, variance_share
from spectrascope.bridge.subspaces import matrix_subspaces
from spectrascope.trace.passes import PassState, TextBatch


def test_variance_share_by_hand():
    C = np.diag([4.0, 1.0, 0.0])
    e1 = np.array([[1.0], [0.0], [0.0]])
    assert variance_share(C, e1) == pytest.approx(0.8)
    assert variance_share(C, np.eye(3)) == pytest.approx(1.0)
    assert variance_share(C, np.zeros((3, 0))) == 0.0


def _planted_matrix(d_in=200, d_out=300, k=8, seed=0):
    """Low-rank heavy signal (k strong directions) plus noise: a clear power-law-ish tail."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((d_out, k)))[0]
    V = np.linalg.qr(rng.standard_normal((d_in, k)))[0]
    W = U @ np.diag(np.geomspace(200, 40, k)) @ V.T + rng.standard_normal((d_out, d_in))
    return W, V


def _feed(collector: InputShares, texts: list[np.ndarray], per_batch: int = 3) -> None:
    """Run the collector's hook over texts (each (n_tokens, d)), ``per_batch`` texts per batch,
    as a pass would (first position of each text excluded from the statistics)."""
    state = PassState()
    (hook,) = collector.module_hooks(state).values()
    for start in range(0, len(texts), per_batch):
        chunk = texts[start : start + per_batch]
        width = max(len(t) for t in chunk) + 1
        x = torch.zeros(len(chunk), width, chunk[0].shape[1])
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, t in enumerate(chunk):
            x[i, 1 : len(t) + 1] = torch.from_numpy(t).float()
            x[i, 0] = 1e4  # the sink: never counted
            mask[i, : len(t) + 1] = 1
        stats = mask.clone()
        stats[:, 0] = 0
        state.batch = TextBatch(torch.zeros_like(mask), mask, stats, torch.arange(start, start + len(chunk)))
        hook(None, (x,), {})


def _collector(sub, excluded=()):
    return InputShares({"W": nn.Identity()}, {"W": ["W"]}, {"W": sub}, {"W": np.array(excluded, dtype=np.int64)})


def test_shares_from_per_text_sums_equal_the_covariance_formula():
    rng = np.random.default_rng(3)
    for shape in [(60, 40), (30, 50)]:  # tall, and wide (rank below d_in: the bulk stops at the rank)
        sub = matrix_subspaces(rng.standard_t(3, size=shape))
        texts = [
            rng.standard_normal((int(rng.integers(5, 20)), shape[1])) * rng.uniform(0.2, 3, size=shape[1]) + 1.5
            for _ in range(12)
        ]
        collector = _collector(sub, excluded=[2, 7])
        tall = shape[0] >= shape[1]  # the modes span the inputs: only the leading ones are projected
        assert (collector.projected_modes("W") < sub.rank) if tall else (collector.projected_modes("W") == sub.rank)
        _feed(collector, texts)
        rows, modes = collector.finish("d", n_boot=200)
        X = np.concatenate(texts)
        C = np.cov(X.T)
        Xr = X.copy()
        Xr[:, [2, 7]] = 0.0
        Cr = np.cov(Xr.T)
        got = {(r["part"], r["variant"]): r for r in rows}
        for part in ("tail", "erg", "bulk"):
            B = sub.reads(part)
            assert got[(part, "raw")]["k"] == B.shape[1]
            assert got[(part, "raw")]["share"] == pytest.approx(variance_share(C, B), rel=1e-6)
            assert got[(part, "robust")]["share"] == pytest.approx(variance_share(Cr, B), rel=1e-6)
            assert got[(part, "raw")]["share_lo"] <= got[(part, "raw")]["share"] <= got[(part, "raw")]["share_hi"]
            assert got[(part, "raw")]["n_texts"] == 12 and got[(part, "raw")]["n_tokens"] == len(X)
            assert 2 <= got[(part, "raw")]["n_units"] < 12  # texts of 5-19 tokens share units of ~64
        assert got[("tail", "raw")]["k"] + got[("bulk", "raw")]["k"] == min(shape)
        np.testing.assert_allclose(
            modes["W"], [variance_share(C, sub.Vt[i : i + 1].T) for i in range(min(10, sub.rank))], rtol=1e-6
        )


def test_mode_plan_by_hand():
    """rank = d_in = 10, tail 2, ERG tail 8, 3 top modes: leading modes only would project 8,
    trailing ones 3 + 7 = 10, the mixed plan 3 leading + 2 trailing = 5 (chosen); a wide matrix
    projects all of its modes."""
    from spectrascope.bridge.input_shares import ModePlan
    from spectrascope.bridge.subspaces import MatrixSubspaces

    def sub(rank, d_in, n_tail, n_erg):
        return MatrixSubspaces(None, np.ones(rank), np.eye(rank, d_in, dtype=np.float32), n_tail, n_erg, 2.0, 1.0)

    plan = ModePlan.of(sub(10, 10, 2, 8), top_modes=3)
    assert (plan.lead, plan.trail, plan.n_projected, plan.prefixes) == (3, 8, 5, (2, 8))
    assert list(plan.rows()) == [0, 1, 2, 8, 9]
    # modes = coordinate axes: R_2 = x0^2 + x1^2 directly, R_8 = |x|^2 - x8^2 - x9^2, then x0^2..x2^2
    x = torch.arange(1.0, 11.0)[None, :]
    squares = x[:, plan.rows()].square()
    got = plan.token_sums(squares, x.square().sum(dim=1))
    assert got.tolist() == [[1 + 4, 385 - 81 - 100, 1, 4, 9]]
    assert ModePlan.of(sub(10, 10, 2, 3), top_modes=3).rows() == slice(0, 3)  # leading: 3 modes
    trailing = ModePlan.of(sub(10, 10, 9, 9), top_modes=1)  # 1 leading + 1 trailing instead of 9
    assert (trailing.lead, trailing.trail, trailing.n_projected) == (1, 9, 2)
    wide = ModePlan.of(sub(4, 10, 1, 2), top_modes=3)
    assert (wide.lead, wide.n_projected, wide.prefixes) == (4, 4, (1, 2, 4))


@pytest.mark.parametrize("n_tail, n_erg", [(3, 30), (30, 3), (36, 36), (0, 38), (2, 5), (40, 40)])
def test_every_mode_plan_gives_the_covariance_formula(n_tail, n_erg):
    """Whichever modes are projected (leading, trailing from a part's end, or both), the tail,
    ERG-tail and bulk shares and the top modes' equal the covariance formula, raw and robust."""
    from dataclasses import replace

    rng = np.random.default_rng(8)
    sub = replace(matrix_subspaces(rng.standard_t(3, size=(60, 40))), n_tail=n_tail, n_erg=n_erg)
    texts = [rng.standard_normal((int(rng.integers(5, 30)), 40)) * rng.uniform(0.2, 3, size=40) + 1.0 for _ in range(9)]
    collector = _collector(sub, excluded=[4])
    _feed(collector, texts)
    rows, modes = collector.finish("d", n_boot=50)
    X = np.concatenate(texts)
    Xr = X.copy()
    Xr[:, 4] = 0.0
    got = {(r["part"], r["variant"]): r["share"] for r in rows}
    for variant, data in (("raw", X), ("robust", Xr)):
        C = np.cov(data.T)
        for part in ("tail", "erg", "bulk"):
            assert got[(part, variant)] == pytest.approx(variance_share(C, sub.reads(part)), rel=1e-5, abs=1e-7)
    C = np.cov(X.T)
    np.testing.assert_allclose(modes["W"], [variance_share(C, sub.Vt[i : i + 1].T) for i in range(10)], rtol=1e-5)


def test_projecting_the_leading_modes_equals_projecting_all_of_them():
    """A square matrix's bulk from the total minus the tail (few modes projected) equals the sum
    over every bulk mode (all modes projected), raw and robust, estimate and interval."""
    rng = np.random.default_rng(5)
    sub = matrix_subspaces(rng.standard_t(3, size=(48, 48)))
    texts = [rng.standard_normal((int(rng.integers(5, 30)), 48)) * rng.uniform(0.2, 3, size=48) for _ in range(15)]
    found = []
    for top_modes in (10, 48):
        collector = _collector(sub, excluded=[3])
        collector.top_modes = top_modes
        _feed(collector, texts)
        found.append(collector.finish("d", n_boot=100)[0])
    assert _collector(sub).projected_modes("W") < 48
    for few, every in zip(*found, strict=True):
        assert (few["part"], few["variant"]) == (every["part"], every["variant"])
        for column in ("share", "share_lo", "share_hi", "enrichment"):
            assert few[column] == pytest.approx(every[column], rel=1e-5, abs=1e-7)


def test_domain_planted_in_the_tail_and_the_isotropic_control():
    W, _ = _planted_matrix()
    sub = matrix_subspaces(W)
    rng = np.random.default_rng(1)
    top = sub.Vt[: sub.n_tail].T.astype(np.float64)  # the matrix's own tail read-directions
    planted = [rng.standard_normal((100, top.shape[1])) @ top.T for _ in range(20)]
    isotropic = [rng.standard_normal((100, 200)) for _ in range(20)]
    shares = {}
    for name, texts in (("planted", planted), ("isotropic", isotropic)):
        collector = _collector(sub)
        _feed(collector, texts)
        rows, modes = collector.finish(name, n_boot=300)
        shares[name] = ({(r["part"], r["variant"]): r for r in rows}, modes["W"])
    planted_rows, iso_rows = shares["planted"][0], shares["isotropic"][0]
    assert sub.n_tail >= 1
    assert planted_rows[("tail", "raw")]["share"] == pytest.approx(1.0, abs=1e-5)
    assert planted_rows[("bulk", "raw")]["share"] == pytest.approx(0.0, abs=1e-5)
    iso = iso_rows[("tail", "raw")]
    assert iso["random_share"] == pytest.approx(sub.n_tail / 200)
    assert iso["enrichment_lo"] <= 1.0 <= iso["enrichment_hi"]  # a random domain: the interval covers 1
    modes = mode_table("W", {"planted": shares["planted"][1], "isotropic": shares["isotropic"][1]})
    assert (modes["top_domain"].iloc[: min(5, sub.n_tail)] == "planted").all()


def test_bootstrap_units_group_short_texts_and_keep_long_ones_apart():
    from spectrascope.bridge.input_shares import bootstrap_units

    # tokens before each row: 0, 127, 254 -> units 0, 1, 3 -> renumbered 0, 1, 2 (one per text)
    units, n = bootstrap_units(torch.tensor([127, 127, 127]), 64)
    assert units.tolist() == [0, 1, 2] and n == 3
    # 14-token texts: before = 0, 14, 28, 42, 56 -> unit 0; 70, 84, 98, 112, 126 -> unit 1; 140 -> unit 2
    units, n = bootstrap_units(torch.full((11,), 14), 64)
    assert units.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2] and n == 3


def _assert_raw_shares_equal_the_formula(sub, texts, **tolerance):
    """The collector's raw tail, ERG-tail and bulk shares of ``texts`` against the covariance formula."""
    collector = _collector(sub)
    _feed(collector, texts)
    rows, _ = collector.finish("d", n_boot=20)
    C = np.cov(np.concatenate(texts).T)
    got = {r["part"]: r["share"] for r in rows if r["variant"] == "raw"}
    for part in ("tail", "erg", "bulk"):
        assert got[part] == pytest.approx(variance_share(C, sub.reads(part)), **tolerance)


def test_shares_stay_exact_with_a_massive_channel():
    """A channel whose mean (3,000) is far above its spread (1): the shifted float32 sums still
    give the float64 covariance formula's shares (an unshifted float32 sum of squares would not)."""
    rng = np.random.default_rng(4)
    sub = matrix_subspaces(rng.standard_t(3, size=(60, 40)))
    texts = []
    for _ in range(10):
        t = rng.standard_normal((int(rng.integers(20, 60)), 40))
        t[:, 5] += 3000.0
        texts.append(t)
    _assert_raw_shares_equal_the_formula(sub, texts, rel=1e-5)


def test_robust_shares_stay_exact_when_the_excluded_channel_fires_on_some_tokens():
    """A channel of 3,000 on one token in ten, 0 elsewhere (shifting by a mean cannot remove it),
    left out of the robust view: the robust total is the other channels' sum of squares, not
    |x|^2 minus that channel's square (float32 would lose the rest of the sum to cancellation)."""
    rng = np.random.default_rng(9)
    sub = matrix_subspaces(rng.standard_t(3, size=(60, 40)))
    texts = []
    for _ in range(10):
        t = rng.standard_normal((int(rng.integers(20, 60)), 40))
        t[:, 5] = np.where(rng.random(len(t)) < 0.1, 3000.0, 0.0)
        texts.append(t)
    collector = _collector(sub, excluded=[5])
    _feed(collector, texts)
    rows, _ = collector.finish("d", n_boot=50)
    X = np.concatenate(texts)
    X[:, 5] = 0.0
    C = np.cov(X.T)
    got = {r["part"]: r["share"] for r in rows if r["variant"] == "robust"}
    for part in ("tail", "erg", "bulk"):
        assert got[part] == pytest.approx(variance_share(C, sub.reads(part)), rel=1e-5)


def test_parts_read_off_trailing_modes_with_a_large_channel_in_them_stay_within_1e7():
    """A channel of 3,000 on one token in ten that lies in the trailing modes (its column scaled
    down: the matrix's weakest direction): the ERG tail, read as |x|^2 minus the trailing modes,
    is a share of ~4e-5, and every share equals the formula to 1e-7 absolute (module docstring)."""
    from dataclasses import replace

    from spectrascope.bridge.input_shares import ModePlan

    rng = np.random.default_rng(10)
    W = rng.standard_normal((60, 40))
    W[:, 5] *= 1e-3
    sub = replace(matrix_subspaces(W), n_tail=3, n_erg=30)
    plan = ModePlan.of(sub, 10)
    assert plan.trail < plan.rank  # the mixed plan: modes 30.. are projected
    texts = []
    for _ in range(12):
        t = rng.standard_normal((int(rng.integers(20, 60)), 40))
        t[:, 5] = np.where(rng.random(len(t)) < 0.1, 3000.0, 0.0)
        texts.append(t)
    _assert_raw_shares_equal_the_formula(sub, texts, rel=1e-5, abs=1e-7)


def test_matrices_reading_one_input_give_the_rows_each_gives_alone():
    """Two matrices reading one input (a tall one, projected on its leading modes, and a wide one,
    on all of them; as q and k read one input) give the rows each gives when hooked on its own."""
    rng = np.random.default_rng(6)
    subs = {
        "tall": matrix_subspaces(rng.standard_t(3, size=(60, 40))),
        "wide": matrix_subspaces(rng.standard_t(3, size=(25, 40))),
    }
    texts = [
        rng.standard_normal((int(rng.integers(5, 40)), 40)) * rng.uniform(0.2, 3, size=40) + 2.0 for _ in range(14)
    ]
    together = InputShares({"x": nn.Identity()}, {"x": ["tall", "wide"]}, subs, {"x": np.array([1, 9])})
    _feed(together, texts)
    rows, modes = together.finish("d", n_boot=100)
    for name, sub in subs.items():
        alone = InputShares({"x": nn.Identity()}, {"x": [name]}, {name: sub}, {"x": np.array([1, 9])})
        _feed(alone, texts)
        expected, expected_modes = alone.finish("d", n_boot=100)
        got = [r for r in rows if r["name"] == name]
        assert len(got) == len(expected) == 6  # 3 parts x 2 variants
        for a, b in zip(got, expected, strict=True):
            for column in ("share", "share_lo", "share_hi", "k", "n_tokens", "n_units"):
                assert a[column] == pytest.approx(b[column], rel=1e-5)
        np.testing.assert_allclose(modes[name], expected_modes[name], rtol=1e-5)
