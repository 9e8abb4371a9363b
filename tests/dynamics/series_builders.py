"""Builders of the dynamics tests: a tiny Llama and a checkpoint series written by a short
training run (the embedding and block 0 frozen, so their tensors are unchanged from
checkpoint to checkpoint), with a corrupt checkpoint in the middle."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

from spectrascope.dynamics.training import save_checkpoint

SERIES_STEPS = (0, 2, 5, 10, 20)
CORRUPT_STEP = 5


def tiny_llama(hidden: int = 32, seed: int = 0, vocab: int = 50) -> torch.nn.Module:
    """A 2-layer Llama (4 heads, 2 KV heads, vocab 50 by default), seeded."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return transformers.LlamaForCausalLM(config)


def write_training_series(root: Path, steps=SERIES_STEPS, corrupt: int | None = CORRUPT_STEP) -> Path:
    """Train :func:`tiny_llama` on random tokens (AdamW, lr 1e-2) with the embedding and
    block 0 frozen, saving ``root/step<N>`` at ``steps``; truncate the ``corrupt`` one."""
    model = tiny_llama()
    for name, param in model.named_parameters():
        if name.startswith(("model.embed_tokens", "model.layers.0.")):
            param.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    for step in range(max(steps) + 1):
        if step in steps:
            save_checkpoint(model, root / f"step{step}")
        ids = torch.randint(0, 50, (4, 16), generator=generator)
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if corrupt is not None:
        weights = root / f"step{corrupt}" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return root
