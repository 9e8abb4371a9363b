"""Write a synthetic Llama checkpoint (Llama-2-7B shapes by default) as sharded bf16 safetensors.

    python scripts/make_synthetic_checkpoint.py OUT_DIR [--seed 0] [--scale 1.0] [--layers N]
                                                [--shard-mb 2000] [--dtype bf16|f32]

Shapes (scale 1): 32 layers, d_model 4096, MLP 11008, vocab 32000, 32 heads of 128, untied
lm_head: 6.74 B parameters, about 13.5 GB in bf16, in shards of about ``--shard-mb`` MB with
a ``model.safetensors.index.json`` and a Llama ``config.json``. ``--scale`` multiplies
d_model, MLP width and vocabulary (head_dim stays 128 where possible) and ``--layers`` sets
the depth, for small copies in tests.

Every 2-D weight is W = 0.02 * (Z / sqrt(n_long) + U diag(s) V^T): Z is Gaussian noise (the
Marchenko-Pastur bulk), U (rows x r) and V (cols x r) are Gaussian with unit-norm columns on
average, and s_i = s_1 * i^(-1 / (2 (alpha - 1))), i = 1..r, a power law planted so that the
top r eigenvalues of W^T W decay like a power law with exponent alpha: alpha is drawn per
tensor from [2, 5] and r = min(rows, cols) / 8, so the fitted tails are not trivial. The
planted alphas are written to ``planted.json``. Everything is seeded from ``--seed`` and the
tensor name, so a tensor is the same whatever the shard layout.

Memory stays bounded: each shard's header is written first (sizes are known from shapes),
then each tensor is generated and written in row chunks (a few tens of MB at a time).
"""

from __future__ import annotations

import argparse
import json
import struct
import zlib
from pathlib import Path

import numpy as np

ROW_CHUNK_ELEMENTS = 8 * 2**20
BASE = {"d_model": 4096, "mlp": 11008, "vocab": 32000, "layers": 32, "head_dim": 128}


def llama_shapes(scale: float = 1.0, layers: int | None = None) -> tuple[list[tuple[str, tuple[int, ...]]], dict]:
    """(name, shape) of every tensor in file order, and the HF config."""
    d = max(16, round(BASE["d_model"] * scale))
    mlp = max(16, round(BASE["mlp"] * scale))
    vocab = max(32, round(BASE["vocab"] * scale))
    n_layers = layers if layers is not None else max(1, round(BASE["layers"] * min(1.0, scale * 8)))
    head_dim = min(BASE["head_dim"], d)
    n_heads = max(1, d // head_dim)
    shapes: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, d))]
    for i in range(n_layers):
        p = f"model.layers.{i}."
        shapes += [
            (p + "self_attn.q_proj.weight", (d, d)),
            (p + "self_attn.k_proj.weight", (d, d)),
            (p + "self_attn.v_proj.weight", (d, d)),
            (p + "self_attn.o_proj.weight", (d, d)),
            (p + "mlp.gate_proj.weight", (mlp, d)),
            (p + "mlp.up_proj.weight", (mlp, d)),
            (p + "mlp.down_proj.weight", (d, mlp)),
            (p + "input_layernorm.weight", (d,)),
            (p + "post_attention_layernorm.weight", (d,)),
        ]
    shapes += [("model.norm.weight", (d,)), ("lm_head.weight", (vocab, d))]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": d,
        "intermediate_size": mlp,
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_heads,
        "vocab_size": vocab,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "rope_theta": 10000.0,
        "spectrascope_synthetic": {"base": "Llama-2-7B shapes", "scale": scale},
    }
    return shapes, config


def tensor_seed(name: str, seed: int) -> int:
    return (zlib.crc32(name.encode()) + 7_919 * seed) % (2**32)


def planted_alpha(name: str, seed: int) -> float:
    return float(np.random.default_rng(tensor_seed(name, seed) ^ 0x5EED).uniform(2.0, 5.0))


def generate_rows(name: str, shape: tuple[int, ...], seed: int):
    """Yield float32 row chunks of the tensor (deterministic for a name, seed and shape)."""
    if len(shape) == 1:
        yield np.ones(shape, dtype=np.float32)
        return
    rows, cols = shape
    rng = np.random.default_rng(tensor_seed(name, seed))
    alpha = planted_alpha(name, seed)
    r = max(1, min(rows, cols) // 8)
    n_long = max(rows, cols)
    edge = 1.0 + np.sqrt(min(rows, cols) / n_long)  # noise bulk edge in singular-value units
    s = (6.0 * edge) * np.arange(1, r + 1, dtype=np.float64) ** (-1.0 / (2.0 * (alpha - 1.0)))
    V = (rng.standard_normal((cols, r), dtype=np.float32) / np.float32(np.sqrt(cols))) * s.astype(np.float32)
    step = max(1, ROW_CHUNK_ELEMENTS // cols)
    for start in range(0, rows, step):
        n = min(rows, start + step) - start
        Z = rng.standard_normal((n, cols), dtype=np.float32)
        Z *= np.float32(1.0 / np.sqrt(n_long))
        U = rng.standard_normal((n, r), dtype=np.float32)
        U *= np.float32(1.0 / np.sqrt(rows))
        Z += U @ V.T
        Z *= np.float32(0.02)
        yield Z


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


def write_shard(path: Path, tensors: list[tuple[str, tuple[int, ...]]], seed: int, dtype: str) -> None:
    """Stream one safetensors file: header first, then each tensor's bytes chunk by chunk."""
    itemsize = 2 if dtype == "bf16" else 4
    header, offset = {}, 0
    for name, shape in tensors:
        nbytes = int(np.prod(shape)) * itemsize
        header[name] = {
            "dtype": "BF16" if dtype == "bf16" else "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        for name, shape in tensors:
            fh.writelines(
                (to_bf16_bits(chunk) if dtype == "bf16" else chunk.astype(np.float32)).tobytes()
                for chunk in generate_rows(name, shape, seed)
            )


def make_checkpoint(
    out: Path,
    seed: int = 0,
    scale: float = 1.0,
    layers: int | None = None,
    shard_mb: float = 2000,
    dtype: str = "bf16",
    progress: bool = False,
) -> Path:
    """Write the checkpoint into ``out``; return ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shapes, config = llama_shapes(scale, layers)
    itemsize = 2 if dtype == "bf16" else 4
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in shapes:
        nbytes = int(np.prod(shape)) * itemsize
        if shards[-1] and size + nbytes > shard_mb * 2**20:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    weight_map, total = {}, 0
    for i, tensors in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_shard(out / fname, tensors, seed, dtype)
        for name, shape in tensors:
            weight_map[name] = fname
            total += int(np.prod(shape)) * itemsize
        if progress:
            print(f"wrote {fname} ({len(tensors)} tensors)", flush=True)
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
    )
    config["spectrascope_synthetic"]["seed"] = seed
    (out / "config.json").write_text(json.dumps(config, indent=1))
    planted = {name: planted_alpha(name, seed) for name, shape in shapes if len(shape) == 2}
    (out / "planted.json").write_text(json.dumps(planted, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies d_model, MLP width and vocab")
    ap.add_argument("--layers", type=int, default=None, help="number of layers (default 32 at scale 1)")
    ap.add_argument("--shard-mb", type=float, default=2000)
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    args = ap.parse_args()
    out = make_checkpoint(args.out, args.seed, args.scale, args.layers, args.shard_mb, args.dtype, progress=True)
    total = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    print(f"{out}: {total / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
