"""Benchmark: EAP-IG on every edge of SmolLM2 vs exact edge patching, in one run.

On one task (default: geography, 16 prompts):

- ``eap-ig``: EAP-IG scores of all ~123,000 edges (5 integration steps);
- ``exact``: exact edge patching (:class:`spectrascope.circuits.edge_patching.EdgePatcher`,
  one patched copy of the prompts per edge, stacked forwards) of a random sample of edges and
  of the EAP-IG's top edges; its time per edge scaled to every edge.

Each phase runs in its own process (``--phase``), measured from outside (wall time and the
peak RSS of the process, :mod:`measure`), so the peak memory belongs to that phase alone (the
model, about 0.6 GB in float32, is in both). The phases exchange the scores through a
temporary folder. Printed: the time ratio (exact, scaled to all edges / EAP-IG), the rank
correlations of the scores on the random sample and on the top edges, and each phase's peak.

    python benchmarks/circuits.py [--task geography] [--n-prompts 16] [--sample 200] [--top 50]
                                  [--steps 5] [--threads 1] [--long]

``--long`` adds EAP-IG on long prompts (4 induction sequences of 513 tokens, forwards of at most
1024 tokens) to show that its memory does not grow with the prompt beyond the chunk's.
A ``load`` phase (model and task only) gives the memory baseline.

Timings on a shared machine are noisy; the ratio, measured in the same run, is the number to
compare. A model load is in both phases' wall time; each phase also reports the seconds of
its own work, measured inside.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def _setup(args: argparse.Namespace):
    import torch

    from spectrascope.circuits.tasks import builtin_task
    from spectrascope.models.loaded import load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    return model, builtin_task(model, args.task, n=args.n_prompts, seed=args.seed)


def phase_load(args: argparse.Namespace, folder: Path) -> dict:
    """The model and the task only: the memory baseline of the other phases."""
    _, task = _setup(args)
    return {"prompts": task.n}


def phase_long(args: argparse.Namespace, folder: Path) -> dict:
    """EAP-IG on long prompts (induction, 2 x ``--long-length`` + 1 tokens) with a small token budget:
    memory stays bounded because each forward holds at most ``max_tokens`` rows x positions."""
    import torch

    from spectrascope.circuits.eap import attribute_edges
    from spectrascope.circuits.tasks import induction_task
    from spectrascope.models.loaded import load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    task = induction_task(model, n=args.long_prompts, length=args.long_length, seed=args.seed)
    started = time.perf_counter()
    attribute_edges(model, task, "eap-ig", steps=args.steps, max_tokens=args.long_max_tokens)
    return {
        "seconds": time.perf_counter() - started,
        "prompts": task.n,
        "positions": task.n_positions,
        "max_tokens": args.long_max_tokens,
    }


def phase_eap_ig(args: argparse.Namespace, folder: Path) -> dict:
    from spectrascope.circuits.eap import attribute_edges

    model, task = _setup(args)
    started = time.perf_counter()
    scores = attribute_edges(model, task, "eap-ig", steps=args.steps)
    seconds = time.perf_counter() - started
    np.save(folder / "scores.npy", scores.scores)
    return {
        "seconds": seconds,
        "edges": scores.graph.n_edges,
        "clean": scores.clean_metric,
        "corrupted": scores.corrupted_metric,
        "prompts": task.n,
        "positions": task.n_positions,
        "n_layers": scores.graph.n_layers,
        "n_heads": scores.graph.n_heads,
    }


def phase_exact(args: argparse.Namespace, folder: Path) -> dict:
    from spectrascope.circuits.edge_patching import EdgePatcher

    model, task = _setup(args)
    scores = np.load(folder / "scores.npy")
    started = time.perf_counter()
    patcher = EdgePatcher(model, task)
    setup = time.perf_counter() - started
    inputs, nodes = patcher.graph.edge_list()
    rng = np.random.default_rng(args.seed)
    sample = rng.choice(len(inputs), size=min(args.sample, len(inputs)), replace=False)
    started = time.perf_counter()
    sampled = patcher.edge_effects(list(zip(inputs[sample], nodes[sample], strict=True)))
    sample_seconds = time.perf_counter() - started
    order = np.argsort(-np.abs(scores[inputs, nodes]), kind="stable")[: args.top]
    top = patcher.edge_effects(list(zip(inputs[order], nodes[order], strict=True)))
    np.savez(folder / "exact.npz", sample=sample, sampled=sampled, order=order, top=top)
    return {
        "setup_seconds": setup,
        "sample_seconds": sample_seconds,
        "sample": len(sample),
        "seconds_per_edge": sample_seconds / len(sample),
        "edges": len(inputs),
    }


def _rank_correlations(a: np.ndarray, b: np.ndarray) -> dict:
    from scipy.stats import kendalltau, spearmanr

    return {
        "spearman": float(spearmanr(a, b)[0]),
        "kendall": float(kendalltau(a, b)[0]),
        "pearson": float(np.corrcoef(a, b)[0, 1]),
        "sign_agreement": float(np.mean(np.sign(a) == np.sign(b))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="geography")
    parser.add_argument("--n-prompts", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sample", type=int, default=200, help="random edges patched exactly")
    parser.add_argument("--top", type=int, default=50, help="EAP-IG's top edges also patched exactly")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long", action="store_true", help="also measure EAP-IG's memory on long prompts")
    parser.add_argument("--long-length", type=int, default=256, help="repeated length of the long prompts")
    parser.add_argument("--long-prompts", type=int, default=4)
    parser.add_argument("--long-max-tokens", type=int, default=1024)
    parser.add_argument("--phase", choices=["load", "eap-ig", "exact", "long"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase = {"load": phase_load, "eap-ig": phase_eap_ig, "exact": phase_exact, "long": phase_long}[args.phase]
        result = phase(args, Path(args.folder))
        print("RESULT " + json.dumps(result))
        return
    from measure import run_measured

    base = [
        sys.executable,
        __file__,
        "--model",
        args.model,
        "--task",
        args.task,
        "--n-prompts",
        str(args.n_prompts),
        "--steps",
        str(args.steps),
        "--sample",
        str(args.sample),
        "--top",
        str(args.top),
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
        "--long-length",
        str(args.long_length),
        "--long-prompts",
        str(args.long_prompts),
        "--long-max-tokens",
        str(args.long_max_tokens),
    ]
    phases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for phase in ("load", "eap-ig", "exact", *(["long"] if args.long else [])):
            measured = run_measured([*base, "--phase", phase, "--folder", tmp])
            lines = [line for line in measured.stdout.splitlines() if line.startswith("RESULT ")]
            if measured.returncode != 0 or not lines:
                raise SystemExit(f"phase {phase} failed:\n{measured.stdout[-3000:]}")
            phases[phase] = {
                **json.loads(lines[-1][7:]),
                "wall_seconds": measured.seconds,
                "peak_rss_mb": measured.peak_rss_mb,
            }
        scores = np.load(Path(tmp) / "scores.npy")
        exact = np.load(Path(tmp) / "exact.npz")
    from spectrascope.circuits.graph import Graph

    eap, ex = phases["eap-ig"], phases["exact"]
    inputs, nodes = Graph(eap["n_layers"], eap["n_heads"]).edge_list()
    by_edge = scores[inputs, nodes]  # the edge order the exact phase sampled in
    n_edges = ex["edges"]
    exact_all = ex["seconds_per_edge"] * n_edges
    summary = {
        "task": args.task,
        "prompts": eap["prompts"],
        "positions": eap["positions"],
        "edges": n_edges,
        "eap_ig_seconds": eap["seconds"],
        "exact_seconds_per_edge": ex["seconds_per_edge"],
        "exact_all_edges_seconds_estimated": exact_all,
        "time_ratio_exact_over_eap_ig": exact_all / eap["seconds"],
        "random_sample": {"edges": ex["sample"], **_rank_correlations(by_edge[exact["sample"]], exact["sampled"])},
        "eap_ig_top": {"edges": len(exact["order"]), **_rank_correlations(by_edge[exact["order"]], exact["top"])},
        "peak_rss_mb": {
            "model_and_task_only": phases["load"]["peak_rss_mb"],
            "eap-ig": eap["peak_rss_mb"],
            "exact": ex["peak_rss_mb"],
        },
        "wall_seconds": {"eap-ig": eap["wall_seconds"], "exact": ex["wall_seconds"]},
        "clean_metric": eap["clean"],
        "corrupted_metric": eap["corrupted"],
        "steps": args.steps,
        "threads": args.threads,
    }
    if "long" in phases:
        summary["long_prompts"] = phases["long"]
    print(json.dumps(summary, indent=2))
    print(
        f"EAP-IG, all {n_edges} edges: {eap['seconds']:.1f} s (peak RSS {eap['peak_rss_mb']:.0f} MB); exact "
        f"edge patching: {ex['seconds_per_edge']:.3f} s per edge (peak RSS {ex['peak_rss_mb']:.0f} MB), "
        f"{exact_all / 3600:.1f} h for all edges: ratio {exact_all / eap['seconds']:.0f}x. Spearman(EAP-IG, exact): "
        f"{summary['random_sample']['spearman']:.3f} on {ex['sample']} random edges, "
        f"{summary['eap_ig_top']['spearman']:.3f} on EAP-IG's top {len(exact['order'])}."
    )


if __name__ == "__main__":
    main()
