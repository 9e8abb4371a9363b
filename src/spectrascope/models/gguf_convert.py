"""Convert a GGUF model once to a cached HF directory (float32 safetensors + config.json).

Loading SmolLM2 from GGUF through transformers takes ~30 s; the dequantized copy loads in
about a second and is what the activation tools use. Weights are dequantized one tensor at a
time under HF names and layouts (see gguf_names.py) and written as one file (the
float32 model is held in memory once while writing: 540 MB for SmolLM2-135M). The cache key is the
GGUF file's path, size and modification time, so a changed file is converted again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from safetensors.numpy import save_file

from ..arch import spec_for_gguf
from ..errors import SourceError
from .gguf_source import GGUFSource, _field

CACHE_ENV = "SPECTRASCOPE_CACHE"


def cache_root() -> Path:
    """The cache folder: $SPECTRASCOPE_CACHE, else ~/.cache/spectrascope."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "spectrascope")


def _cache_dir(path: Path) -> Path:
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / f"{path.stem}-{key}"


def hf_llama_config(source: GGUFSource) -> dict:
    """A transformers LlamaConfig dict from the GGUF metadata."""
    reader, cfg = source._reader, source.config()
    arch = cfg["model_type"]
    spec = spec_for_gguf(arch)
    if spec is None or spec.name != "llama":  # the config below is a LlamaConfig
        raise SourceError(f"GGUF conversion supports Llama-architecture files, not {arch!r}")
    get = lambda k, d=None: _field(reader, f"{arch}.{k}", d)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "vocab_size": cfg.get("vocab_size") or source._by_name["model.embed_tokens.weight"].shape[-1].item(),
        "max_position_embeddings": cfg.get("max_position_embeddings", 2048),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "hidden_act": "silu",
        "tie_word_embeddings": cfg["tie_word_embeddings"],
        "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id"),
        "pad_token_id": _field(reader, "tokenizer.ggml.padding_token_id"),
        "torch_dtype": "float32",
    }


def convert_gguf(path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Dequantize a Llama GGUF file into ``out_dir`` (default: the cache); return the folder.

    The folder holds model.safetensors (float32, HF names and layouts), config.json, and a
    ``source.json`` naming the GGUF it came from. Reuses a finished conversion.
    """
    path = Path(path)
    out = Path(out_dir) if out_dir else _cache_dir(path)
    done = out / "source.json"
    if done.exists():
        return out
    source = GGUFSource(path)
    config = hf_llama_config(source)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {info.name: source.load(info.name) for info in source.tensors()}
    tmp = out / "model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / "model.safetensors")
    (out / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}, indent=2))
    done.write_text(json.dumps({"gguf": str(path.resolve()), "file_type": source.config().get("gguf_file_type")}))
    return out
