"""Session fixtures for the model-source tests (builders live in model_builders.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from model_builders import plain_state, tiny_llama, write_hf_dir, write_llama_gguf
from transformers import LlamaForCausalLM


@pytest.fixture(scope="session")
def llama_gguf(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray], LlamaForCausalLM]:
    """A tied tiny Llama as GGUF (no output.weight, like SmolLM2), with its HF tensors."""
    model = tiny_llama(tied=True)
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama-f32.gguf"
    return path, write_llama_gguf(path, model), model


@pytest.fixture(scope="session")
def llama_safetensors_dir(tmp_path_factory) -> tuple[Path, LlamaForCausalLM]:
    """An untied tiny Llama as a HF directory with one model.safetensors and config.json."""
    model = tiny_llama()
    folder = write_hf_dir(tmp_path_factory.mktemp("hf") / "tiny-llama", plain_state(model), model.config.to_dict())
    return folder, model
