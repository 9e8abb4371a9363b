"""Benchmark: tracking N checkpoints vs N separate weight runs, on the grokking series.

    python benchmarks/track.py [--series DIR] [--quick] [--repeats 2] [--no-weightwatcher]

The series is ``DIR`` (a folder of step folders, e.g. ``grokking-out/checkpoints`` from
``spectrascope experiment grokking``); without ``--series`` the grokking experiment's
training is run first (``--quick``: the tests' shortened configuration) into a temporary
folder. Every strategy computes the same weight table (exact precision, MP fit, traps):

- ``separate``: one ``run_weights`` per checkpoint (open, plan, analyze every matrix);
- ``track``: ``spectrascope.dynamics.track`` over the series (hash every tensor, reuse rows
  of unchanged tensors, write each step's table as it finishes);
- ``track, frozen``: the same series with the MLP, embedding and unembedding replaced by
  step 0's in every checkpoint (a fine-tuning run with frozen layers): those rows are reused;
- ``weightwatcher``: weightwatcher 0.7.7 ``analyze()`` of every checkpoint (the reference
  tool), unless ``--no-weightwatcher``.

Strategies run interleaved (each repeat runs them all in turn), one thread, in this
process; the minimum over repeats is reported, with the ratio to ``separate`` and
the per-checkpoint overhead (track - separate) / N. The claim under test: tracking N
checkpoints costs at most N weights runs plus a constant, and less when tensors are unchanged.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.numpy import load_file, save_file
from threadpoolctl import threadpool_limits

from spectrascope.dynamics.series import checkpoint_series
from spectrascope.dynamics.track import track
from spectrascope.weights.options import WeightsOptions
from spectrascope.weights.runner import run_weights

FROZEN = ("mlp.", "embed_tokens", "lm_head")


def make_series(root: Path, quick: bool) -> Path:
    from spectrascope.dynamics.grokking import GrokkingConfig, train_grokking

    config = GrokkingConfig.quick() if quick else GrokkingConfig()
    start = time.perf_counter()
    run = train_grokking(config, root)
    print(f"trained the grokking series ({len(run.checkpoints)} checkpoints) in {time.perf_counter() - start:.1f} s")
    return root


def frozen_copy(series: Path, root: Path) -> Path:
    """The series with every FROZEN tensor replaced by step 0's."""
    checkpoints = checkpoint_series(series)
    first = load_file(str(checkpoints[0].path / "model.safetensors"))
    for cp in checkpoints:
        tensors = load_file(str(cp.path / "model.safetensors"))
        tensors.update({k: v for k, v in first.items() if any(f in k for f in FROZEN)})
        folder = root / cp.path.name
        folder.mkdir(parents=True)
        shutil.copy(cp.path / "config.json", folder / "config.json")
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return root


def separate(series: Path) -> int:
    options = WeightsOptions(mp_fit=True, randomize=True)
    rows = 0
    for cp in checkpoint_series(series):
        table, _ = run_weights(cp.path, options)
        rows += len(table)
    return rows


def tracked(series: Path, out: Path) -> int:
    shutil.rmtree(out, ignore_errors=True)
    result = track(series, out=out)
    return int(result.checkpoints["computed"].sum())


def weightwatcher_all(series: Path) -> int:
    import logging

    import weightwatcher as ww
    from transformers import LlamaForCausalLM

    from spectrascope.models.tokenizer_cache import quiet_transformers

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    count = 0
    for cp in checkpoint_series(series):
        with quiet_transformers():
            model = LlamaForCausalLM.from_pretrained(str(cp.path), local_files_only=True)
        details = ww.WeightWatcher(model=model).analyze(mp_fit=True, randomize=True)
        count += len(details)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-weightwatcher", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="track-bench-"))
    try:
        series = args.series or make_series(work / "series", args.quick)
        n = len(checkpoint_series(series))
        frozen = frozen_copy(series, work / "frozen")
        strategies = {
            "separate": lambda: separate(series),
            "track": lambda: tracked(series, work / "out"),
            "track, frozen": lambda: tracked(frozen, work / "out-frozen"),
        }
        if not args.no_weightwatcher:
            strategies["weightwatcher"] = lambda: weightwatcher_all(series)
        times: dict[str, list[float]] = {k: [] for k in strategies}
        counts: dict[str, int] = {}
        with threadpool_limits(1):
            for _ in range(args.repeats):
                for name, run in strategies.items():
                    start = time.perf_counter()
                    counts[name] = run()
                    times[name].append(time.perf_counter() - start)
        base = min(times["separate"])
        print(f"\n{n} checkpoints of {series} (min of {args.repeats} repeats, one thread)")
        print(f"{'strategy':<16}{'seconds':>10}{'x separate':>12}{'per checkpoint':>16}  work")
        for name, values in times.items():
            best = min(values)
            work_done = {"separate": f"{counts[name]} rows", "weightwatcher": f"{counts[name]} rows"}.get(
                name, f"{counts[name]} matrices computed, the rest reused"
            )
            print(f"{name:<16}{best:>10.2f}{best / base:>12.2f}{best / n:>15.3f}s  {work_done}")
        overhead = (min(times["track"]) - base) / n
        print(
            f"track - separate: {overhead * 1000:+.1f} ms per checkpoint "
            f"(hashing, per-step tables; negative when reading is shared)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
