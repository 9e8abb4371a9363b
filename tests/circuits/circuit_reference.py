"""Micro Llamas and an independent float64 reference forward for the circuit tests.

``reference_forward`` is an independent float64 implementation of a Llama forward written from
the edge definition of :mod:`spectrascope.circuits.graph`: every downstream input is assembled
explicitly as the sum of its upstream nodes' outputs, each taken from the corrupted run when
the edge is patched. It shares nothing with the hook machinery under test (it reads the
weights and the rotary cos/sin only), so agreement to 1e-10 checks the hooks' arithmetic.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from spectrascope.circuits.tasks import Task, TaskMetric

VOCAB = 40


def micro_llama(
    n_layers: int = 2,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    *,
    seed: int = 0,
    identity_norms: bool = True,
    zero_queries: bool = False,
    zero_mlp: bool = False,
    attention: str = "sdpa",
    dtype=torch.float64,
) -> LlamaForCausalLM:
    """A random micro Llama (d_model 16, d_head 4, d_mlp 24) in eval mode.

    ``identity_norms``: every RMSNorm replaced by ``nn.Identity`` (HF's RMSNorm computes in
    float32 whatever the model's dtype; without it the model is float64 end to end with sdpa
    attention, whose softmax stays in float64). ``zero_queries``: W_Q = 0, so every position
    attends uniformly to itself and all earlier ones. ``zero_mlp``: down_proj = 0.
    """
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        head_dim=4,
        vocab_size=VOCAB,
        max_position_embeddings=32,
        tie_word_embeddings=False,
    )
    config._attn_implementation = attention
    model = LlamaForCausalLM(config).to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
        model.lm_head.weight.normal_(0, 1.0)
        for block in model.model.layers:
            block.input_layernorm.weight.uniform_(0.5, 1.5)
            block.post_attention_layernorm.weight.uniform_(0.5, 1.5)
            if zero_queries:
                block.self_attn.q_proj.weight.zero_()
            if zero_mlp:
                block.mlp.down_proj.weight.zero_()
        model.model.norm.weight.uniform_(0.5, 1.5)
    if identity_norms:
        for block in model.model.layers:
            block.input_layernorm = nn.Identity()
            block.post_attention_layernorm = nn.Identity()
        model.model.norm = nn.Identity()
    return model


CLEAN = torch.tensor([[3, 7, 11, 13, 17, 19], [4, 8, 12, 14, 18, 20], [5, 9, 2, 21, 22, 23]])
CORRUPTED = torch.tensor([[3, 7, 23, 13, 29, 31], [4, 9, 12, 15, 18, 21], [6, 9, 2, 24, 25, 23]])


def micro_task(kind: str = "logit_diff") -> Task:
    """Three prompt pairs of 6 tokens, scored at the last position (and at position 3 for row 0)."""
    positions = torch.tensor([[5, 3], [5, 5], [5, 5]])
    scored = torch.tensor([[True, True], [True, False], [True, False]])
    answer = torch.tensor([[5, 6], [6, 6], [7, 7]])
    wrong = torch.tensor([[6, 5], [5, 5], [8, 8]])
    if kind == "logit_diff":
        metric = TaskMetric("logit_diff", positions, scored, answer=answer, wrong=wrong)
    else:
        metric = TaskMetric("prob", positions, scored, answer=answer)
    return Task("micro", CLEAN.clone(), CORRUPTED.clone(), None, metric)


# ----------------------------------------------------------------------------- the reference


def _rms(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.Identity):
        return x
    x64 = x.double()
    return module.weight.double() * x64 / torch.sqrt(x64.pow(2).mean(-1, keepdim=True) + module.variance_epsilon)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def reference_forward(
    model: LlamaForCausalLM,
    embeds: torch.Tensor,
    corrupted_outputs: dict[str, torch.Tensor] | None = None,
    patched: set[tuple[str, str, str]] = frozenset(),
    leaves: dict[tuple[str, str], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(logits (b, pos, vocab), node outputs) of the edge-by-edge forward.

    Args:
        embeds: (b, pos, d) token embeddings (the ``embed`` node's output).
        corrupted_outputs: node name -> output in the corrupted run (for patched edges).
        patched: ``(upstream, downstream, input)`` edges whose upstream output is replaced by
            its corrupted value in that input only.
        leaves: when given, a zero tensor requiring grad is added to every input and stored here
            under ``(downstream, input)`` (gradients per input).
    """
    cfg = model.config
    H, KV, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    group = H // KV
    n_pos = embeds.shape[1]
    outputs: dict[str, torch.Tensor] = {"embed": embeds}
    order = ["embed"]
    positions = torch.arange(n_pos)[None]
    cos, sin = model.model.rotary_emb(embeds, positions)
    cos, sin = cos.double(), sin.double()
    causal = torch.ones(n_pos, n_pos, dtype=torch.bool).tril()

    def assemble(downstream: str, kind: str, upstream: list[str]) -> torch.Tensor:
        total = torch.zeros_like(embeds)
        for u in upstream:
            taken = corrupted_outputs[u] if (u, downstream, kind) in patched else outputs[u]
            total = total + taken
        if leaves is not None:
            leaves[(downstream, kind)] = torch.zeros_like(total, requires_grad=True)
            total = total + leaves[(downstream, kind)]
        return total

    for layer, block in enumerate(model.model.layers):
        attn = block.self_attn
        upstream = list(order)
        new = {}
        for h in range(H):
            name = f"head:{layer}.{h}"
            g = h // group
            inputs = {kind: _rms(block.input_layernorm, assemble(name, kind, upstream)) for kind in "qkv"}
            q = inputs["q"] @ attn.q_proj.weight[h * hd : (h + 1) * hd].double().T
            k = inputs["k"] @ attn.k_proj.weight[g * hd : (g + 1) * hd].double().T
            v = inputs["v"] @ attn.v_proj.weight[g * hd : (g + 1) * hd].double().T
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            scores = (q @ k.transpose(-1, -2)) / hd**0.5
            scores = scores.masked_fill(~causal, float("-inf"))
            z = torch.softmax(scores, dim=-1) @ v
            new[name] = z @ attn.o_proj.weight[:, h * hd : (h + 1) * hd].double().T
        outputs.update(new)
        order.extend(new)
        name = f"mlp:{layer}"
        x = _rms(block.post_attention_layernorm, assemble(name, "resid", list(order)))
        mlp = block.mlp
        hidden = nn.functional.silu(x @ mlp.gate_proj.weight.double().T) * (x @ mlp.up_proj.weight.double().T)
        outputs[name] = hidden @ mlp.down_proj.weight.double().T
        order.append(name)
    final = _rms(model.model.norm, assemble("logits", "resid", list(order)))
    return final @ model.lm_head.weight.double().T, outputs


def reference_metric_rows(model, task: Task, patched: set[tuple[str, str, str]]) -> torch.Tensor:
    """(n,) per-prompt metric of the clean run with ``patched`` edges, by the reference."""
    with torch.no_grad():
        return _reference_metric_rows(model, task, patched)


def _reference_metric_rows(model, task: Task, patched: set[tuple[str, str, str]]) -> torch.Tensor:
    embed = model.model.embed_tokens.weight.double()
    _, corrupted = reference_forward(model, embed[task.corrupted_ids])
    logits, _ = reference_forward(model, embed[task.clean_ids], corrupted, patched)
    return task.metric.per_row(logits[:, task.metric.keep])
