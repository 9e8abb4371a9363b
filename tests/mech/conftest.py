"""Shared fixtures of the mechanism tests: one torch thread, and a tiny random Llama (``run_cli`` is in
tests/conftest.py)."""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import transformers

from spectrascope.models.zoo import bundled_path


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Run each module on one torch thread, restoring the setting after.

    The tensors here are small: a second thread only adds synchronisation, and on a loaded
    machine (other processes on the 2 cores) each parallel region waits for a descheduled
    thread; measured on this machine: 1 thread 23 s for four mech test files, 2 threads 183 s.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny() -> types.SimpleNamespace:
    """A 3-layer random Llama (d_model 32, 4 heads, 2 KV heads) reading the bundled MiniLM
    tokenizer's ids (fast tokenizer, right padding): ``.hf`` and ``.tokenizer``."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(bundled_path("minilm-l6")), local_files_only=True)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=tokenizer.vocab_size,
    )
    return types.SimpleNamespace(hf=transformers.LlamaForCausalLM(config).eval(), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory) -> Path:
    """:func:`tiny` saved as a Hugging Face folder (model and tokenizer), for the CLI."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny.hf.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder
