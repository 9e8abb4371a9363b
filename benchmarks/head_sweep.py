"""Benchmark: ablating each of SmolLM2's 270 heads in turn, on one fixed batch.

The metric is the induction loss (next-token loss on the second copy of repeated random
token sequences, :func:`spectrascope.mech.metrics.repeated_loss`); every head is
zero-ablated on its own. Strategies (all give the same numbers; the script checks it):

- ``one_forward_per_head``: ``with ablate(model, head): metric(model)``, 270 full forwards;
- ``stacked``: the batch stacked once per head of a layer, a different head ablated in each
  block of rows, one forward per layer (``ablation_sweep(..., reuse_prefix=False)``);
- ``stacked_resumed``: stacked, and each layer's forward starts at that layer from the clean
  residual stream (``ablation_sweep(...)``, the default).

    python benchmarks/head_sweep.py [--n-seq 4] [--seq-len 20] [--threads 1] [--skip-slow]

Prints one line per strategy: wall and CPU seconds with the speed-up over one forward per
head, heads per second, and the largest difference from the one-forward-per-head numbers.
The strategies run interleaved layer by layer, so that load from other processes on a shared
machine hits them alike.

Structure: each section is a function ``section(model, args) -> list[Result]`` listed in
:data:`SECTIONS`; ``main`` loads the model once, runs the sections in order and prints
their results. (Attribution vs exact patching is a section to add here.)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from spectrascope.mech.ablation import all_heads
from spectrascope.mech.ablation_sweep import ablation_sweep
from spectrascope.mech.metrics import Metric, repeated_loss
from spectrascope.models.loaded import load_model


@dataclass
class Result:
    """One measured strategy of one section."""

    section: str
    strategy: str
    seconds: float  # wall clock
    cpu_seconds: float  # CPU time of this process (less sensitive to other load on the machine)
    items: int  # components (heads, sites ...) handled
    max_abs_diff: float = float("nan")  # against the section's reference strategy
    note: str = ""


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(fn(), wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def fixed_batch(model: Any, args: argparse.Namespace) -> Metric:
    """The fixed batch every section measures on: the induction loss of n_seq repeated sequences."""
    return repeated_loss(model, n_seq=args.n_seq, seq_len=args.seq_len, seed=args.seed, copy="second")


def head_ablation_sweep(model: Any, args: argparse.Namespace) -> list[Result]:
    """Zero-ablate every head in turn: one forward per head vs the batched sweeps.

    The strategies are interleaved layer by layer (each strategy sweeps one layer's heads, in
    an order that rotates from layer to layer), so load from other processes hits all of them
    alike; each per-layer call includes the sweep's own clean baseline forward.
    """
    metric = fixed_batch(model, args)
    heads = all_heads(model)
    metric(model)  # warm-up
    strategies: dict[str, dict[str, Any]] = {"stacked_resumed": {}, "stacked": {"reuse_prefix": False}}
    if not args.skip_slow:
        strategies = {"one_forward_per_head": {"batched": False}, **strategies}
    names = list(strategies)
    wall = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in names}
    layers = sorted({h.layer for h in heads})
    for i, layer in enumerate(layers):
        group = [h for h in heads if h.layer == layer]
        for name in names[i % len(names) :] + names[: i % len(names)]:
            table, seconds, cpu_seconds = timed(
                lambda name=name, group=group: ablation_sweep(model, group, metric, **strategies[name])
            )
            parts[name].append(table)
            wall[name] += seconds
            cpu[name] += cpu_seconds
    values = {name: pd.concat(parts[name])["value"].to_numpy() for name in names}
    reference = values[names[0]]
    note = f"batch {tuple(metric.input_ids.shape)}"
    return [
        Result(
            "head_ablation",
            name,
            wall[name],
            cpu[name],
            len(heads),
            float(np.max(np.abs(values[name] - reference))),
            note,
        )
        for name in names
    ]


SECTIONS: list[Callable[[Any, argparse.Namespace], list[Result]]] = [head_ablation_sweep]
"""The benchmark's sections, run in order."""


def report(results: list[Result]) -> None:
    """Print each section's strategies with speed-ups relative to its first (slowest) strategy."""
    for section in dict.fromkeys(r.section for r in results):
        rows = [r for r in results if r.section == section]
        base = rows[0].seconds
        base_cpu = rows[0].cpu_seconds
        print(f"\n{section}:")
        for r in rows:
            print(
                f"  {r.strategy:<22} wall {r.seconds:7.1f} s (x{base / r.seconds:5.2f})  "
                f"cpu {r.cpu_seconds:7.1f} s (x{base_cpu / r.cpu_seconds:5.2f})  {r.items / r.seconds:6.2f} items/s  "
                f"max |diff| {r.max_abs_diff:.2e}  {r.note}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n-seq", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--skip-slow", action="store_true", help="skip the one-forward-per-item reference strategies")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, load_seconds, _ = timed(lambda: load_model(args.model))
    print(f"{args.model}: loaded in {load_seconds:.1f} s; torch threads {torch.get_num_threads()}")
    results: list[Result] = []
    for section in SECTIONS:
        results.extend(section(model, args))
    report(results)


if __name__ == "__main__":
    main()
