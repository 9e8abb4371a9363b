"""SAE training speed and quality: spectrascope vs sae-lens on the same cached activations, one run.

For each architecture, both tools train an SAE of the same size on the same in-memory
activations (same batch size, learning rate, token budget, device) and the script prints
tokens/s of each, their ratio, and the quality each reached on held-out rows (explained
variance, L0, dead fraction, measured by the same function on both SAEs' encode/decode).
sae-lens runs its own trainer (``SAETrainer``, activation scaling ``expected_average_only_in``,
its defaults otherwise); sparsity settings: TopK / BatchTopK the same k; JumpReLU sae-lens's
quadratic L0 penalty around target k, ours the target-L0 controller; ReLU sae-lens L1 = 5
(its usual scale), ours the target-L0 controller (so L0 is matched only for the k-based rows).

The activation store is timed too: tokens/s of the forward passes that produce a site's
activations (stopped at the site) against tokens/s of writing those rows as float16 chunks.

    python benchmarks/sae_training.py                        # synthetic d=576 activations
    python benchmarks/sae_training.py --store DIR            # rows of an activation store
    python benchmarks/sae_training.py --device cuda          # GPU when present
    python benchmarks/sae_training.py --store-model smollm2-135m --store-site blocks.15.hook_resid_post

Numbers measured on a loaded machine are provisional: compare the ratios, measured in one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def load_rows(args) -> np.ndarray:
    if args.store:
        from spectrascope.sae.store import ActivationStore

        store = ActivationStore.open(args.store)
        from spectrascope.sae.massive import massive_mask

        rows = torch.cat([store.chunk(i)["activations"] for i in range(len(store.meta["chunks"]))]).float()
        rows = rows[~massive_mask(rows)]  # both tools see the same rows: massive-activation tokens out
        return rows[: args.rows].numpy()
    from spectrascope.sae.synthetic import planted_dictionary

    return planted_dictionary(n=args.rows, d=576, n_features=2304, p_active=32 / 2304, noise=0.02, seed=0).activations


def quality(encode, decode, x: torch.Tensor) -> dict:
    with torch.no_grad():
        codes = encode(x)
        error = (x - decode(codes)).pow(2).sum(dim=1)
        total = (x - x.mean(dim=0)).pow(2).sum(dim=1)
        return {
            "explained_variance": float(1 - error.sum() / total.sum()),
            "l0": float((codes > 0).sum(dim=1).float().mean()),
            "dead_fraction": float(((codes > 0).sum(dim=0) == 0).float().mean()),
        }


def ours(
    arch: str,
    train: np.ndarray,
    held: torch.Tensor,
    d_sae: int,
    k: int,
    tokens: int,
    batch: int,
    lr: float,
    device: str,
) -> dict:
    from spectrascope.sae.train import train_sae

    start = time.perf_counter()
    sae = train_sae(train, arch=arch, d_sae=d_sae, k=k, tokens=tokens, batch_size=batch, lr=lr, device=device)
    seconds = time.perf_counter() - start
    x = held.to(device)
    return {"tool": "spectrascope", "seconds": seconds, **quality(sae.encode, sae.decode, x)}


def theirs(
    arch: str,
    train: np.ndarray,
    held: torch.Tensor,
    d_sae: int,
    k: int,
    tokens: int,
    batch: int,
    lr: float,
    device: str,
) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sae_lens
        from sae_lens.config import SAETrainerConfig
        from sae_lens.training.sae_trainer import SAETrainer

    d_in = train.shape[1]
    common = {"d_in": d_in, "d_sae": d_sae, "device": device, "normalize_activations": "expected_average_only_in"}
    if arch == "topk":
        sae = sae_lens.TopKTrainingSAE(sae_lens.TopKTrainingSAEConfig(k=k, **common))
    elif arch == "batch_topk":
        sae = sae_lens.BatchTopKTrainingSAE(sae_lens.BatchTopKTrainingSAEConfig(k=k, **common))
    elif arch == "jumprelu":
        sae = sae_lens.JumpReLUTrainingSAE(
            sae_lens.JumpReLUTrainingSAEConfig(jumprelu_sparsity_loss_mode="quadratic", target_l0=float(k), **common)
        )
    else:
        sae = sae_lens.StandardTrainingSAE(sae_lens.StandardTrainingSAEConfig(l1_coefficient=5.0, **common))
    data = torch.from_numpy(train)
    generator = torch.Generator().manual_seed(0)

    def provider():
        while True:
            order = torch.randperm(data.shape[0], generator=generator)
            for s in range(0, data.shape[0] - batch + 1, batch):
                yield data[order[s : s + batch]]

    cfg = SAETrainerConfig(
        total_training_samples=tokens,
        train_batch_size_samples=batch,
        lr=lr,
        lr_end=lr,
        device=device,
        n_batches_for_norm_estimate=max(1, 16384 // batch),
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained = SAETrainer(cfg, sae, provider()).fit()
    seconds = time.perf_counter() - start
    trained.eval()
    return {"tool": "sae-lens", "seconds": seconds, **quality(trained.encode, trained.decode, held.to(device))}


def store_speed(model: str, site: str, tokens: int) -> pd.DataFrame:
    """tokens/s of forward passes to the site vs of writing the rows as float16 safetensors chunks."""
    from safetensors.torch import save_file

    from spectrascope.corpora import corpus_texts
    from spectrascope.models.loaded import load_model
    from spectrascope.sae.store import resolve_site, site_activations, text_batches

    loaded = load_model(model)
    name = resolve_site(loaded.hf, site)
    texts = corpus_texts("code,legal")
    forward_s = write_s = 0.0
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for corpus in texts:
            for batch, _ in text_batches(
                loaded.tokenizer, corpus.texts, list(range(len(corpus.texts))), tokens // len(texts), 128
            ):
                t0 = time.perf_counter()
                rows = site_activations(loaded.hf, batch, name, loaded.device)
                t1 = time.perf_counter()
                save_file({"activations": rows.half().contiguous()}, str(Path(tmp) / f"c{n}.safetensors"))
                t2 = time.perf_counter()
                forward_s += t1 - t0
                write_s += t2 - t1
                n += rows.shape[0]
    return pd.DataFrame(
        [
            {
                "model": model,
                "site": name,
                "tokens": n,
                "forward_tokens_per_s": n / forward_s,
                "write_tokens_per_s": n / write_s,
                "write_over_forward": forward_s / write_s,
            }
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="activation store folder (default: synthetic activations)")
    parser.add_argument("--rows", type=int, default=60_000, help="rows held in memory (the last 5000 are held out)")
    parser.add_argument("--archs", default="topk,batch_topk,jumprelu,relu")
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store-model", default=None, help="also time the activation store on this model")
    parser.add_argument("--store-site", default="blocks.15.hook_resid_post")
    parser.add_argument("--store-tokens", type=int, default=4096)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = load_rows(args)
    train, held = rows[:-5000], torch.from_numpy(rows[-5000:]).float()
    d_sae = args.expansion * rows.shape[1]
    results = []
    for arch in args.archs.split(","):
        for runner in (ours, theirs):
            r = runner(arch, train, held, d_sae, args.k, args.tokens, args.batch_size, args.lr, args.device)
            r.update(
                arch=arch,
                d_in=rows.shape[1],
                d_sae=d_sae,
                tokens=args.tokens,
                device=args.device,
                tokens_per_s=args.tokens / r["seconds"],
            )
            results.append(r)
            print(
                f"{arch:10s} {r['tool']:12s} {r['tokens_per_s']:10,.0f} tok/s  EV {r['explained_variance']:.3f}  "
                f"L0 {r['l0']:.1f}  dead {r['dead_fraction']:.1%}",
                flush=True,
            )
    table = pd.DataFrame(results)
    speed = table.pivot(index="arch", columns="tool", values="tokens_per_s")
    speed["speedup (spectrascope / sae-lens)"] = speed["spectrascope"] / speed["sae-lens"]
    print(
        table[
            [
                "arch",
                "tool",
                "d_in",
                "d_sae",
                "tokens",
                "device",
                "seconds",
                "tokens_per_s",
                "explained_variance",
                "l0",
                "dead_fraction",
            ]
        ].to_string(index=False)
    )
    print(speed.to_string())
    if args.store_model:
        print(store_speed(args.store_model, args.store_site, args.store_tokens).to_string(index=False))


if __name__ == "__main__":
    main()
