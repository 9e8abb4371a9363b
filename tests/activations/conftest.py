import types

import pytest
import torch
import transformers

from spectrascope.models.zoo import bundled_path


@pytest.fixture(scope="session")
def bert_tokenizer():
    return transformers.AutoTokenizer.from_pretrained(str(bundled_path("minilm-l6")), local_files_only=True)


@pytest.fixture(scope="session")
def tiny_lm(bert_tokenizer):
    """A tiny random Llama that reads the MiniLM tokenizer's ids (offline, seeded)."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=bert_tokenizer.vocab_size,
    )
    hf = transformers.LlamaForCausalLM(cfg).eval()
    return types.SimpleNamespace(hf=hf, tokenizer=bert_tokenizer, name="tiny")
