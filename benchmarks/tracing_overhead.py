"""Benchmark: the cost of float64 covariance statistics at every resid_post site of SmolLM2.

Runs the same token batches (8 x 128 tokens of built-in text) through the model with plain
forward passes and with `accumulate_site_moments` on all 30 `blocks.*.hook_resid_post`
sites, alternating the two to share the machine's noise; prints the overhead ratio and the
tokens per second of each.

    python benchmarks/tracing_overhead.py [--batches 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from spectrascope.activations.batching import token_batches
from spectrascope.corpora import load_corpus
from spectrascope.models.loaded import load_model
from spectrascope.trace import accumulate_site_moments


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    loaded = load_model(args.model)
    texts = load_corpus("python-docs").texts
    batches = []
    for b in token_batches(
        loaded.tokenizer, texts, max_tokens=10**9, seq_len=128, batch_tokens=8 * 128, skip_first=False
    ):
        if b["input_ids"].shape == (8, 128):
            batches.append({"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]})
        if len(batches) == args.batches:
            break
    tokens = sum(b["input_ids"].numel() for b in batches)
    n_layers = loaded.hf.config.num_hidden_layers

    def plain() -> None:
        with torch.no_grad():
            for b in batches:
                loaded.hf(**b)

    def with_stats() -> None:
        accumulate_site_moments(loaded.hf, batches, "resid_post")

    plain()  # warm-up
    times = {"plain": [], "stats": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("stats", with_stats)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    print(
        f"model {args.model}: {len(batches)} batches of 8 x 128 tokens, stats at {n_layers} resid_post sites, "
        f"torch threads {torch.get_num_threads()}"
    )
    for k in ("plain", "stats"):
        print(
            f"  {k:6s} best {best[k]:.2f} s  ({tokens / best[k]:.0f} tokens/s)  all runs {[round(t, 2) for t in times[k]]}"
        )
    print(f"  overhead ratio (stats / plain, best of {args.repeats}): {best['stats'] / best['plain']:.3f}")


if __name__ == "__main__":
    main()
