"""Tiny seeded models and on-disk checkpoints (safetensors, sharded, GGUF) for the model tests.

Everything is built from configs; nothing is downloaded. (A plain module, not conftest, so
test files can import it without clashing with other directories' conftest modules.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)

D_MODEL, D_MLP, N_LAYERS, N_HEADS, N_KV_HEADS, VOCAB, CTX = 64, 128, 2, 4, 2, 120, 64


def llama_config(tied: bool = False) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=D_MODEL,
        intermediate_size=D_MLP,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        num_key_value_heads=N_KV_HEADS,
        vocab_size=VOCAB,
        max_position_embeddings=CTX,
        tie_word_embeddings=tied,
    )


def tiny_llama(tied: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(llama_config(tied)).eval()


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_embd=D_MODEL,
        n_layer=N_LAYERS,
        n_head=N_HEADS,
        vocab_size=VOCAB,
        n_positions=CTX,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg).eval()


def tiny_neox() -> GPTNeoXForCausalLM:
    torch.manual_seed(0)
    cfg = GPTNeoXConfig(
        hidden_size=D_MODEL,
        intermediate_size=D_MLP,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        vocab_size=VOCAB,
        max_position_embeddings=CTX,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPTNeoXForCausalLM(cfg).eval()


def tiny_bert() -> BertForMaskedLM:
    torch.manual_seed(0)
    cfg = BertConfig(
        hidden_size=D_MODEL,
        intermediate_size=D_MLP,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        vocab_size=VOCAB,
        max_position_embeddings=CTX,
    )
    return BertForMaskedLM(cfg).eval()


def minilm_llama_dir(folder: Path, n_layers: int = 2, special_ids: bool = True) -> Path:
    """A tiny random Llama (d_model 32, MLP 64, 4 heads, 2 KV heads; torch seed 0) reading the
    bundled MiniLM tokenizer's ids, saved with that tokenizer in ``folder`` (a model the study and
    the text metrics can load); its BOS / EOS ids are the tokenizer's [CLS] / [SEP] when
    ``special_ids``."""
    import transformers

    from spectrascope.models.zoo import bundled_path

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(bundled_path("minilm-l6")), local_files_only=True)
    torch.manual_seed(0)
    ids = {"bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id} if special_ids else {}
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=tokenizer.vocab_size,
        **ids,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def plain_state(module_or_dict) -> dict[str, torch.Tensor]:
    """Detached, contiguous, storage-independent copies (what save_file accepts)."""
    items = (
        module_or_dict.state_dict().items() if isinstance(module_or_dict, torch.nn.Module) else module_or_dict.items()
    )
    return {k: v.detach().clone().contiguous() for k, v in items}


def write_hf_dir(folder: Path, tensors: dict[str, torch.Tensor], config: dict | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config, default=str))
    return folder


def write_sharded(folder: Path, tensors: dict[str, torch.Tensor], config: dict | None) -> Path:
    """Two shards + model.safetensors.index.json, the layout of HF's save_pretrained."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    weight_map = {}
    for fname, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(folder / fname))
        weight_map.update({k: fname for k in keys})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config, default=str))
    return folder


# ----------------------------------------------------------------------------- GGUF

_GGUF_BLOCK = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}
_GGUF_GLOBAL = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def llama_cpp_permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Verbatim logic of llama.cpp's convert_hf_to_gguf.py ``LlamaModel.permute``."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def gguf_name(hf: str) -> str:
    if hf in _GGUF_GLOBAL:
        return _GGUF_GLOBAL[hf]
    parts = hf.split(".")  # model.layers.N.<module...>.weight
    block, module = parts[2], ".".join(parts[3:-1])
    return f"blk.{block}.{_GGUF_BLOCK[module]}.{parts[-1]}"


def write_llama_gguf(path: Path, model, arch: str = "llama", permute: bool = True) -> dict[str, np.ndarray]:
    """Write a Llama-layout model as an F32 GGUF the way llama.cpp's converter does: tensors
    under llama.cpp names and, for arch "llama" (``LlamaModel.modify_tensors``), the rows of
    q and k -- weights and biases -- permuted. llama.cpp's Qwen2 converter does not permute
    (``permute=False``). Returns the HF tensors written (float32 numpy, HF layout)."""
    import gguf

    cfg = model.config
    state = {k: v.detach().float().numpy().copy() for k, v in model.named_parameters()}
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_vocab_size(cfg.vocab_size)
    for name, W in state.items():
        data = W
        if permute and name.endswith(("self_attn.q_proj.weight", "self_attn.q_proj.bias")):
            data = llama_cpp_permute(W, cfg.num_attention_heads)
        elif permute and name.endswith(("self_attn.k_proj.weight", "self_attn.k_proj.bias")):
            data = llama_cpp_permute(W, cfg.num_key_value_heads)
        writer.add_tensor(gguf_name(name), np.ascontiguousarray(data, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return state
