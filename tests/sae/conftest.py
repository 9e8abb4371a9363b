"""Shared fixtures of the SAE tests: one torch thread, planted-dictionary data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from spectrascope.sae.synthetic import PlantedDictionary, planted_dictionary


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small tensors: one torch thread is faster than two on a shared 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def planted() -> PlantedDictionary:
    """20,000 samples of 64 unit directions in 32 dimensions, ~3.2 active per sample, noise 0.01."""
    return planted_dictionary(n=20_000, d=32, n_features=64, p_active=0.05, noise=0.01, seed=0)


@pytest.fixture(scope="module")
def tiny():
    """A 2-layer random Llama (d_model 32) reading the bundled MiniLM tokenizer's ids:
    ``.hf``, ``.tokenizer`` and ``.name``, as a loaded model has."""
    import types

    import transformers

    from spectrascope.models.zoo import bundled_path

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(bundled_path("minilm-l6")), local_files_only=True)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=tokenizer.vocab_size,
    )
    return types.SimpleNamespace(hf=transformers.LlamaForCausalLM(config).eval(), tokenizer=tokenizer, name="tiny")


@pytest.fixture(scope="module")
def detector(tiny):
    """``detector(token)``: an SAE on ``blocks.0.hook_resid_pre`` (the token embeddings) whose
    feature 0 fires on ``token`` and nothing else; features 1-3 never fire."""
    from spectrascope.sae.registry import build_sae

    def make(token: str):
        """Feature 0 fires on ``token`` only (e . e_T above the midpoint between |e_T|^2 and the
        largest e . e_T of any other token); the others never fire."""
        token_id = tiny.tokenizer.convert_tokens_to_ids(token)
        embed = tiny.hf.get_input_embeddings().weight.detach()
        e = embed[token_id]
        scores = embed @ e
        runner_up = float(torch.topk(scores, 2).values[1])
        assert float(scores[token_id]) == float(scores.max()) > runner_up
        cut = 0.5 * (float(e @ e) + runner_up)
        sae = build_sae("relu", 32, 4)
        with torch.no_grad():
            sae.apply_b_dec_to_input = False
            sae.W_enc.zero_()
            sae.W_enc[:, 0] = e
            sae.b_enc.fill_(-1.0)
            sae.b_enc[0] = -cut
            sae.b_dec.zero_()
        assert int((scores > cut).sum()) == 1
        return sae

    return make
