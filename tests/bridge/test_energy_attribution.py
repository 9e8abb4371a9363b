import pytest
import torch
import transformers

from spectrascope.bridge.energy_attribution import attributions


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
    )
    return transformers.LlamaForCausalLM(cfg).eval().double()


@pytest.fixture(scope="module")
def word_model(tiny):
    """(loaded, references): the tiny model behind a tokenizer reading space-separated ids, and
    one standard-Gaussian energy reference for both layers."""
    import types

    from spectrascope.activations.token_energy import ReferenceGaussian
    from spectrascope.trace.moments import RunningMoments

    class Tokenizer:
        def __call__(self, text, return_tensors=None, truncation=True, max_length=64):
            return {"input_ids": torch.tensor([[int(w) for w in text.split()][:max_length]])}

        def convert_ids_to_tokens(self, ids):
            return [str(int(i)) for i in ids]

    gen = torch.Generator().manual_seed(0)
    reference = ReferenceGaussian.from_moments(RunningMoments().update(torch.randn(500, 32, generator=gen).double()))
    refs = {"blocks.0.hook_resid_post": reference, "blocks.1.hook_resid_post": reference}
    return types.SimpleNamespace(hf=tiny, tokenizer=Tokenizer()), refs


def test_integrated_gradients_completeness(tiny):
    ids = torch.tensor([[3, 17, 9, 22, 5, 41, 8]])
    gxi, ig, delta = attributions(tiny, ids, steps=128)
    assert ig.shape == gxi.shape == (7,)
    assert ig.sum() == pytest.approx(delta, rel=1e-3)  # sum of IG = f(e) - f(baseline)


def test_gradient_x_input_is_the_first_order_term(tiny):
    """Scaling the embeddings by (1 + h) changes f by h * sum(grad x input) to first order."""
    from spectrascope.bridge.energy_attribution import log_likelihood_from_embeddings

    ids = torch.tensor([[3, 17, 9, 22, 5]])
    gxi, _, _ = attributions(tiny, ids)
    e = tiny.get_input_embeddings()(ids).detach()
    h = 1e-3  # part of the forward (rotary tables) runs in float32: a smaller h only adds noise
    with torch.no_grad():
        df = (
            log_likelihood_from_embeddings(tiny, e * (1 + h), ids)
            - log_likelihood_from_embeddings(tiny, e * (1 - h), ids)
        ) / (2 * h)
    assert gxi.sum() == pytest.approx(df.item(), rel=1e-3)


def test_too_short_text(tiny):
    from spectrascope.errors import SpectrascopeError

    with pytest.raises(SpectrascopeError):
        attributions(tiny, torch.tensor([[3]]))


def test_attribution_rows_leave_out_the_sink_and_the_last_token(word_model):
    """Scored tokens are 1 .. T-2: the sink's energy is not comparable, and the last token's
    attribution is 0 by construction (its prediction is not scored)."""
    import numpy as np

    from spectrascope.bridge.energy_attribution import agreement_table, text_attribution_rows

    loaded, refs = word_model
    rows = []
    for text_id, text in enumerate(["3 17 9 22 5 41 8", "4 4 9 12 30 2", "7 1 2 3 4 5 6 7"]):
        rows += text_attribution_rows(
            loaded, text, text_id, refs, "blocks.0.hook_resid_post", "blocks.1.hook_resid_post", steps=8, seq_len=64
        )
    import pandas as pd

    tokens = pd.DataFrame(rows)
    assert tokens.groupby("text")["position"].agg(["min", "max"]).values.tolist() == [[1, 5], [1, 4], [1, 6]]
    table = agreement_table(tokens, n_boot=100, n_perm=99)
    assert set(table.columns) >= {"rho", "rho_lo", "rho_hi", "p_value", "q_value", "n_texts"}
    plain = table[table["given"] == ""]
    assert (plain["n_texts"] == 3).all() and np.isfinite(table["q_value"]).all()
    assert (table["n_texts"] >= 2).all()  # given position, a text of 4 scored tokens may leave nothing to rank


def test_gradient_x_input_alone_equals_the_one_beside_integrated_gradients(tiny):
    from spectrascope.bridge.energy_attribution import gradient_x_input

    ids = torch.tensor([[3, 17, 9, 22, 5]])
    gxi, _, _ = attributions(tiny, ids, steps=4)
    assert gradient_x_input(tiny, ids) == pytest.approx(gxi, rel=1e-10, abs=1e-12)


def test_rows_without_integrated_gradients_compare_gradient_x_input_only(word_model):
    """steps=0: IG columns are NaN and the agreement table keeps the pairs it can compute;
    with steps, each text carries the completeness gap of its path integral."""
    import numpy as np
    import pandas as pd

    from spectrascope.bridge.energy_attribution import agreement_table, text_attribution_rows

    loaded, refs = word_model
    texts = ["3 17 9 22 5 41 8", "4 4 9 12 30 2", "7 1 2 3 4 5 6 7"]

    def rows(steps):
        out = []
        for i, text in enumerate(texts):
            out += text_attribution_rows(
                loaded, text, i, refs, "blocks.0.hook_resid_post", "blocks.1.hook_resid_post", steps, 64
            )
        return pd.DataFrame(out)

    plain, with_ig = rows(0), rows(64)
    assert plain["integrated_gradients"].isna().all() and plain["ig_completeness_gap"].isna().all()
    np.testing.assert_allclose(plain["grad_x_input"], with_ig["grad_x_input"], rtol=1e-9)
    assert (with_ig["ig_completeness_gap"] < 0.05).all()  # the tiny double-precision model converges
    table = agreement_table(plain, n_boot=50, n_perm=19)
    assert list(zip(table["a"], table["b"], table["given"], strict=True)) == [
        ("energy_change", "|grad_x_input|", ""),
        ("energy_last", "|grad_x_input|", ""),
        ("energy_change", "|grad_x_input|", "position"),
    ]
    assert len(agreement_table(with_ig, n_boot=50, n_perm=19)) == 5


def test_agreement_given_position_removes_a_shared_position_trend():
    """Energy rises and |attribution| falls with position, and nothing else links them: the plain
    per-text correlation is strongly negative and significant; given position it is ~0 and not."""
    import numpy as np
    import pandas as pd

    from spectrascope.bridge.energy_attribution import agreement_table

    rng = np.random.default_rng(1)
    rows = []
    for text in range(24):
        for t in range(1, 31):
            rows.append(
                {
                    "text": text,
                    "position": t,
                    "energy_change": 0.05 * t + rng.normal(0, 0.3),
                    "energy_last": rng.normal(),
                    "grad_x_input": (3.0 - 0.08 * t + rng.normal(0, 0.3)) * rng.choice([-1, 1]),
                    "integrated_gradients": np.nan,
                }
            )
    table = agreement_table(pd.DataFrame(rows), n_boot=200, n_perm=199).set_index(["a", "given"])
    plain, partial = table.loc[("energy_change", "")], table.loc[("energy_change", "position")]
    assert plain["rho"] < -0.5 and plain["p_value"] < 0.01
    assert partial["rho_lo"] < 0 < partial["rho_hi"] and partial["p_value"] > 0.05
