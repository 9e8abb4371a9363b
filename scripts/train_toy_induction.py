#!/usr/bin/env python
"""Train the toy 2-layer attention-only induction model and write the shipped checkpoint.

    python scripts/train_toy_induction.py [--steps 3000] [--seed 0] [--out DIR]

Model: ``spectrascope.mech.toy_models.toy_induction_config()`` (a LlamaForCausalLM, d_model 64,
2 layers x 4 heads, vocab 64) with every MLP weight zero and frozen (attention-only).
Data: ``[BOS] r r`` with ``r`` distinct random tokens from 1..63; the repeat length L is drawn
per step from 6..30 (so no head can solve the task by a fixed positional offset). Loss: mean
next-token cross-entropy over all positions. AdamW, linear warm-up then cosine decay; one seed
controls everything. Takes a few minutes on 2 CPU cores. The training loop is
:func:`spectrascope.dynamics.induction.train_induction`; ``spectrascope experiment induction``
runs the same training with checkpoints on a log-spaced schedule and tracks their spectra.

At the end it prints the loss on the first vs the second copy (L = 20, held-out seed) and the
head scores, and writes config.json + model.safetensors to ``--out`` (default: the package's
``mech/data/toy_induction``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from spectrascope.dynamics.induction import InductionConfig, train_induction
from spectrascope.mech.metrics import repeated_loss
from spectrascope.mech.toy_models import TOY_EVAL_LENGTH, TOY_INDUCTION_DIR, load_toy_induction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=TOY_INDUCTION_DIR)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: the model is tiny, and extra threads only contend)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = InductionConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
    model = train_induction(config, log=lambda line: print(line, flush=True))
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
