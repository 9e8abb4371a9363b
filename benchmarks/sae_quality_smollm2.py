"""The SAE quality table on SmolLM2-135M: one layer, every architecture at matched L0.

Collects (or reuses) an activation store of ``--site`` over the six built-in domains, trains
each architecture with ``k`` active features per token (TopK, BatchTopK) or target L0 ``k``
(ReLU, JumpReLU), and evaluates each on held-out text: explained variance, L0, dead and dense
features, and the next-token loss with the reconstruction spliced in (loss recovered between
zero ablation and the clean model), with 95 % bootstrap intervals over texts. Prints the
table and what it took (tokens, d_sae, seconds); writes it with ``--out``.

    python benchmarks/sae_quality_smollm2.py --store /tmp/store_l15 --out sae-quality
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--site", default="blocks.15.hook_resid_post")
    parser.add_argument("--store", required=True, help="activation store folder (built if missing)")
    parser.add_argument("--store-tokens", type=int, default=120_000)
    parser.add_argument("--tokens", type=int, default=120_000, help="training tokens per SAE")
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--eval-tokens", type=int, default=256, help="held-out tokens per domain")
    parser.add_argument("--archs", default="topk,batch_topk,jumprelu,relu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the table (and each SAE, in OUT/<arch>) here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from spectrascope.corpora import DEFAULT_CORPORA
    from spectrascope.models.loaded import load_model
    from spectrascope.sae.evaluate import evaluate_sae
    from spectrascope.sae.store import build_store
    from spectrascope.sae.train import train_sae

    loaded = load_model(args.model)
    start = time.perf_counter()
    store = build_store(loaded, args.site, DEFAULT_CORPORA, args.store_tokens, args.store)
    store_seconds = time.perf_counter() - start
    rows = []
    for arch in args.archs.split(","):
        start = time.perf_counter()
        sae = train_sae(
            store, arch=arch, d_sae=args.expansion * store.d, k=args.k, tokens=args.tokens, batch_size=args.batch_size
        )
        train_seconds = time.perf_counter() - start
        sae.metadata.update(store.sae_metadata())
        if args.out:
            from spectrascope.sae.saelens_io import save_sae

            save_sae(sae, f"{args.out}/{arch}")
        start = time.perf_counter()
        quality = evaluate_sae(sae, loaded, args.site, DEFAULT_CORPORA, args.eval_tokens, n_boot=200)
        row = quality[quality["domain"] == "all"].iloc[0].to_dict()
        row.update(
            arch=arch,
            d_sae=sae.d_sae,
            train_tokens=sae.metadata["training"]["tokens"],
            train_seconds=round(train_seconds, 1),
            eval_seconds=round(time.perf_counter() - start, 1),
            store_tokens=store.n_tokens,
            store_seconds=round(store_seconds, 1),
        )
        rows.append(row)
        print(
            pd.DataFrame([row])[
                [
                    "arch",
                    "explained_variance",
                    "l0",
                    "dead_fraction",
                    "loss_recovered",
                    "loss_recovered_lo",
                    "loss_recovered_hi",
                    "train_seconds",
                ]
            ].to_string(index=False),
            flush=True,
        )
    table = pd.DataFrame(rows)
    columns = [
        "arch",
        "d_sae",
        "train_tokens",
        "train_seconds",
        "n_tokens",
        "explained_variance",
        "explained_variance_lo",
        "explained_variance_hi",
        "l0",
        "dead_fraction",
        "dense_fraction",
        "loss_clean",
        "loss_sae",
        "loss_zero",
        "ce_increase",
        "ce_increase_lo",
        "ce_increase_hi",
        "loss_recovered",
        "loss_recovered_lo",
        "loss_recovered_hi",
        "store_tokens",
        "store_seconds",
    ]
    print(table[columns].to_string(index=False))
    if args.out:
        from spectrascope.tables import write_table

        write_table(table[columns], args.out, "sae_quality_smollm2")


if __name__ == "__main__":
    main()
