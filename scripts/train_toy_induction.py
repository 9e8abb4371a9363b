#!/usr/bin/env python
"""Train the toy 2-layer attention-only induction model and write the shipped checkpoint.

    python scripts/train_toy_induction.py [--steps 3000] [--seed 0] [--out DIR]

Model: ``spectrascope.mech.toy_models.toy_induction_config()`` (a LlamaForCausalLM, d_model 64,
2 layers x 4 heads, vocab 64) with every MLP weight zero and frozen (attention-only).
Data: ``[BOS] r r`` with ``r`` distinct random tokens from 1..63; the repeat length L is drawn
per step from 6..30 (so no head can solve the task by a fixed positional offset). Loss: mean
next-token cross-entropy over all positions. AdamW, linear warm-up then cosine decay; one seed
controls everything. Takes a few minutes on 2 CPU cores.

At the end it prints the loss on the first vs the second copy (L = 20, held-out seed) and the
head scores, and writes config.json + model.safetensors to ``--out`` (default: the package's
``mech/data/toy_induction``).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from spectrascope.mech.metrics import repeated_loss, repeated_random_tokens
from spectrascope.mech.toy_models import (
    TOY_BOS,
    TOY_EVAL_LENGTH,
    TOY_INDUCTION_DIR,
    TOY_VOCAB,
    load_toy_induction,
    toy_induction_config,
    zero_mlps,
)

MIN_LENGTH, MAX_LENGTH = 6, 30


def build_model(seed: int) -> torch.nn.Module:
    """A freshly initialised attention-only toy model (MLPs zero and frozen)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    config = toy_induction_config()
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config)
    zero_mlps(model)
    for layer in model.model.layers:  # the MLP's input norm has no effect: freeze it too
        layer.post_attention_layernorm.weight.requires_grad_(False)
    return model


def optimizer_for(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with weight decay on the trainable matrices only (not on norms)."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.ndim == 2]
    no_decay = [p for n, p in trainable if p.ndim != 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98),
    )


def train(steps: int, batch: int, lr: float, seed: int, log_every: int = 250) -> torch.nn.Module:
    model = build_model(seed)
    model.train()
    optimizer = optimizer_for(model, lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))),
    )
    lengths = torch.Generator().manual_seed(seed + 1)
    pool = torch.arange(1, TOY_VOCAB)
    start = time.time()
    for step in range(steps):
        length = int(torch.randint(MIN_LENGTH, MAX_LENGTH + 1, (1,), generator=lengths))
        ids = repeated_random_tokens(batch, length, seed=seed * 1_000_003 + step + 7, token_ids=pool, bos_token_id=TOY_BOS)
        logits = model(input_ids=ids, use_cache=False).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, TOY_VOCAB), ids[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % log_every == 0 or step == steps - 1:
            print(f"step {step:5d}  L={length:2d}  loss {loss.item():.3f}  ({time.time() - start:.0f} s)", flush=True)
    zero_mlps(model)  # still exactly zero (frozen), asserted again by the loader
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=TOY_INDUCTION_DIR)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: the model is tiny, and extra threads only contend)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = train(args.steps, args.batch, args.lr, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model.config._attn_implementation = "eager"
    model.save_pretrained(args.out, safe_serialization=True)
    for extra in ("generation_config.json",):
        (args.out / extra).unlink(missing_ok=True)

    from spectrascope.mech.head_scores import head_scores

    toy = load_toy_induction(path=args.out)
    first = repeated_loss(toy, n_seq=64, seq_len=TOY_EVAL_LENGTH, seed=12345, copy="first")(toy)
    second = repeated_loss(toy, n_seq=64, seq_len=TOY_EVAL_LENGTH, seed=12345, copy="second")(toy)
    print(f"loss on the first copy  {first:.3f} nats (ln 63 = {math.log(63):.3f})")
    print(f"loss on the second copy {second:.3f} nats")
    print(head_scores(toy, n_seq=64, seq_len=TOY_EVAL_LENGTH, seed=12345).round(3).to_string(index=False))
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
