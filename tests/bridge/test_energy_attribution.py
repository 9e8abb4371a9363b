import pytest
import torch
import transformers

from spectrascope.bridge.energy_attribution import attributions


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=50)
    return transformers.LlamaForCausalLM(cfg).eval().double()


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
        df = (log_likelihood_from_embeddings(tiny, e * (1 + h), ids) - log_likelihood_from_embeddings(tiny, e * (1 - h), ids)) / (2 * h)
    assert gxi.sum() == pytest.approx(df.item(), rel=1e-3)


def test_too_short_text(tiny):
    from spectrascope.errors import SpectrascopeError

    with pytest.raises(SpectrascopeError):
        attributions(tiny, torch.tensor([[3]]))
