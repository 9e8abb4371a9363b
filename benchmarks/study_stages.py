"""Benchmark: the study's stages, and what one exact ablation costs before and after packing.

    python benchmarks/study_stages.py [--budget default] [--out /tmp/study-bench] [--edits 8] [--tokens 1024]
                                      [--corpus code] [--parts stages,edits,floor,atp]

Part 1 runs ``spectrascope study`` (the given budget, every stage) as a whole process and
prints each stage's seconds (from ``study.json``), the total and the process tree's peak RSS.

Part 2 measures the bridge's cost **per edit per 1,000 tokens** on the same edits and tokens
(``--corpus``: code, 128-token texts; geography, texts of 5 to 20 tokens padded to the
longest), in one run, four ways (all give the same numbers; checked):

- ``before``: one full forward per edit over the domain loss batch (the reference
  implementation, ``ablation_rows(..., batched=False)``);
- ``packed``: row chunks of many edits stacked into forwards (``reuse_prefix=False``,
  ``group_lengths=False``);
- ``resumed``: packed and resumed at the edited layer from the cached clean residual
  (``group_lengths=False``);
- ``after``: resumed, and a padded batch run in length groups at their own widths (the default).

Part 3 (``--atp``) measures the attribution screen (one forward + backward) against exact mean
ablation of every block on one domain: the Spearman rank correlation of their damages. (On
SmolLM2 it was ~0.1: first-order effects vanish near a trained optimum, so the study does not
screen domain ablations with it.)

Part 4 (``--parts floor``) runs the study once more under ``count_linear.py``, which counts
the multiply-adds of every linear map (the model's projections, MLPs and unembedding; the SAE's),
and sets each stage's count against this machine's float32 matrix-multiply rate (a
4,096 x 576 x 1,536 product, the MLP's shape, timed in the same script): the seconds the
stage's matrix multiplies alone need, whatever the rest of the code does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from measure import best_seconds, run_measured


def part_stages(args) -> None:
    out = Path(args.out)
    cmd = [sys.executable, "-m", "spectrascope.cli", "study", args.model, "--out", str(out), "--budget", args.budget]
    m = run_measured(cmd)
    if m.returncode != 0:
        print(m.stdout[-3000:])
        raise SystemExit(f"study failed with exit code {m.returncode}")
    info = json.loads((out / "study.json").read_text())
    print(
        f"study --budget {args.budget} on {args.model}: {m.seconds:.1f} s wall, peak RSS {m.peak_rss_mb / 1024:.2f} GB"
    )
    for stage, seconds in info["seconds"].items():
        print(f"  {stage:12s} {seconds:8.1f} s")
    print(f"  {'stages':12s} {sum(info['seconds'].values()):8.1f} s (the rest: start-up, loading, the report)")


def gemm_rate(threads: int) -> float:
    """Multiply-adds per second of a float32 (4096, 576) x (576, 1536) product (best of 5)."""
    torch.set_num_threads(threads)
    x, w = torch.randn(4096, 576), torch.randn(1536, 576)
    return 4096 * 576 * 1536 / best_seconds(lambda: torch.nn.functional.linear(x, w))


def part_floor(args) -> None:
    out = Path(args.out + "-floor")
    counter = Path(__file__).parent / "count_linear.py"
    cmd = [sys.executable, str(counter), "study", args.model, "--out", str(out), "--budget", args.budget]
    m = run_measured(cmd)
    if m.returncode != 0:
        print(m.stdout[-3000:])
        raise SystemExit(f"study failed with exit code {m.returncode}")
    rows = [json.loads(line[len("LINEAR ") :]) for line in m.stdout.splitlines() if line.startswith("LINEAR ")]
    rate = gemm_rate(args.threads)
    print(f"float32 matrix multiply on {args.threads} threads: {rate / 1e9:.1f} G multiply-adds/s")
    print(f"  {'stage':12s} {'wall s':>8s} {'TMAC':>7s} {'in linear s':>12s} {'floor s':>8s}")
    for r in rows:
        floor = r["macs"] / rate
        print(f"  {r['stage']:12s} {r['wall_s']:8.1f} {r['macs'] / 1e12:7.2f} {r['linear_s']:12.1f} {floor:8.1f}")
    total = {k: sum(r[k] for r in rows) for k in ("wall_s", "macs", "linear_s")}
    print(
        f"  {'stages':12s} {total['wall_s']:8.1f} {total['macs'] / 1e12:7.2f} {total['linear_s']:12.1f}"
        f" {total['macs'] / rate:8.1f}"
    )


def part_edit_cost(args) -> None:
    from spectrascope.corpora import load_corpus
    from spectrascope.mech.ablation_sweep import ablation_rows
    from spectrascope.mech.components import AttnBlock, MlpBlock, SpectralComponent
    from spectrascope.mech.metrics import text_loss
    from spectrascope.models.loaded import load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    n_layers = model.arch.n_layers
    layers = np.linspace(0, n_layers - 1, max(1, args.edits // 3)).round().astype(int)
    edits = [c for layer in layers for c in (AttnBlock(int(layer)), MlpBlock(int(layer)))]
    edits += [SpectralComponent(f"model.layers.{int(layers[len(layers) // 2])}.mlp.down_proj.weight", "tail")]
    metric = text_loss(model, load_corpus(args.corpus).texts, args.tokens, 128, name=args.corpus)
    reference = text_loss(model, load_corpus("legal").texts, 512, 128, name="legal")
    reference = {"input_ids": reference.input_ids, "attention_mask": reference.attention_mask}
    n_tokens = int(metric.attention_mask.sum())
    print(
        f"{args.corpus}: {n_tokens} tokens in {metric.input_ids.shape[0]} texts padded to {metric.input_ids.shape[1]}"
    )
    results = {}
    ways = (
        ("before", {"batched": False}),
        ("packed", {"reuse_prefix": False, "group_lengths": False}),
        ("resumed", {"group_lengths": False}),
        ("after", {}),
    )
    for name, kwargs in ways:
        start, cpu = time.perf_counter(), time.process_time()
        results[name] = ablation_rows(model, edits, metric, "mean", reference, **kwargs)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        per = wall / len(edits) / (n_tokens / 1000)
        print(
            f"edit cost {name:7s}: {per:6.2f} s per edit per 1,000 tokens (wall; CPU {cpu / len(edits) / (n_tokens / 1000):.2f} s), "
            f"{len(edits)} edits x {n_tokens} tokens"
        )
    ref = results["before"]
    for name in ("packed", "resumed", "after"):
        diff = max(float((results[name].ablated[c].values - ref.ablated[c].values).abs().max()) for c in edits)
        print(f"  {name}: largest per-text difference from 'before' {diff:.2e} nats")


def part_atp(args) -> None:
    from scipy.stats import spearmanr

    from spectrascope.corpora import load_corpus
    from spectrascope.mech.ablation_attribution import ablation_attribution
    from spectrascope.mech.ablation_sweep import ablation_rows
    from spectrascope.mech.components import AttnBlock, MlpBlock
    from spectrascope.mech.metrics import text_loss
    from spectrascope.models.loaded import load_model

    model = load_model(args.model)
    blocks = [c for layer in range(model.arch.n_layers) for c in (AttnBlock(layer), MlpBlock(layer))]
    metric = text_loss(model, load_corpus("code").texts, args.tokens, 128, name="code")
    ref = text_loss(model, load_corpus("legal").texts, 512, 128, name="legal")
    reference = {"input_ids": ref.input_ids, "attention_mask": ref.attention_mask}
    atp = ablation_attribution(model, blocks, metric, "mean", reference, max_batch_tokens=512)
    exact = ablation_rows(model, blocks, metric, "mean", reference)
    w = atp.baseline.weights
    est = [float((atp.estimated[c] * w).sum() / w.sum()) for c in blocks]
    ex = [float(exact.ablated[c].reduce() - exact.baseline.reduce()) for c in blocks]
    print(
        f"attribution screen vs exact mean ablation of {len(blocks)} blocks on {int(w.sum())} code tokens: "
        f"Spearman {spearmanr(est, ex).statistic:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--budget", default="default")
    parser.add_argument("--out", default="/tmp/study-bench")
    parser.add_argument("--edits", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--corpus", default="code", help="the domain loss of part 2 (code, geography, ...)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", default="stages,edits", help="comma-separated: stages, edits, floor, atp")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",")}
    if "stages" in parts:
        part_stages(args)
    if "edits" in parts:
        part_edit_cost(args)
    if "floor" in parts:
        part_floor(args)
    if "atp" in parts:
        part_atp(args)


if __name__ == "__main__":
    main()
