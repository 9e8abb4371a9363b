"""Toy models the project trains itself, whose mechanism is known: ground truth for the tools.

``toy-induction``: a 2-layer **attention-only** transformer trained on repeated random token
sequences (``scripts/train_toy_induction.py`` made the shipped checkpoint in
``spectrascope/mech/data/toy_induction/``). It is a Hugging Face ``LlamaForCausalLM``, so every
tracer site works, whose MLP weights (gate, up, down) are exactly zero: the MLP output is
exactly 0 and the residual stream is embeddings + attention only.

Data: ``[BOS] r_1 .. r_L r_1 .. r_L`` with ``r`` drawn without replacement from the tokens
``1 .. vocab_size - 1`` (token 0 is BOS). The first copy is unpredictable (loss ~ ln 63); the
second copy is predictable in context by an induction circuit: a previous-token head in
layer 0 writes "my previous token was A" into position A+1, and an induction head in layer 1
at a later A attends (K-composition) to the position after the earlier A and copies its
token. Training varies L per step (so a purely positional "look back L - 1" head cannot solve
it); evaluation uses L = 20.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spectrascope.errors import SpectrascopeError
from spectrascope.models.loaded import LoadedModel, ModelArch
from spectrascope.models.zoo import TOY_INDUCTION, TOY_INDUCTION_DIR, is_toy_name

__all__ = [
    "TOY_BOS",
    "TOY_EVAL_LENGTH",
    "TOY_INDUCTION",
    "TOY_INDUCTION_DIR",
    "TOY_MAX_POSITIONS",
    "TOY_VOCAB",
    "ToyModel",
    "is_toy_name",
    "load_toy_induction",
    "repeated_tokens",
    "toy_induction_config",
    "zero_mlps",
]


TOY_VOCAB = 64
TOY_BOS = 0
TOY_EVAL_LENGTH = 20
TOY_MAX_POSITIONS = 64


def toy_induction_config() -> Any:
    """The ``LlamaConfig`` of the toy: d_model 64, 2 layers x 4 heads (d_head 16), vocab 64.

    ``intermediate_size`` is 4: the MLP exists (so MLP sites exist) but its weights are zero.
    BOS is token 0; there is no EOS and no padding token.
    """
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=TOY_VOCAB,
        hidden_size=64,
        intermediate_size=4,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=16,
        max_position_embeddings=TOY_MAX_POSITIONS,
        rms_norm_eps=1e-5,
        bos_token_id=TOY_BOS,
        eos_token_id=None,
        pad_token_id=None,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        architectures=["LlamaForCausalLM"],
    )


def zero_mlps(hf_model: torch.nn.Module) -> None:
    """Set every MLP weight (gate, up, down) to exactly 0 and freeze it: attention-only."""
    for layer in hf_model.model.layers:
        for proj in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
            with torch.no_grad():
                proj.weight.zero_()
            proj.weight.requires_grad_(False)


@dataclass
class ToyModel(LoadedModel):
    """A toy model: a :class:`~spectrascope.models.loaded.LoadedModel` without a tokenizer
    (inputs are token ids), what ``load_model("toy-induction")`` returns.

    Attributes:
        hf: the ``LlamaForCausalLM`` in eval mode (eager attention).
        tokenizer: always None.
        arch: :class:`~spectrascope.models.loaded.ModelArch` of its config.
        name: ``"toy-induction"``.
        bos_token_id: the BOS token (0).
        token_ids: (n,) the ordinary tokens random sequences draw from (1 .. vocab - 1).
        eval_length: the repeat length the checks use (20).
    """

    hf: Any
    tokenizer: Any = None
    arch: ModelArch | None = None
    name: str = TOY_INDUCTION
    source_path: Path = TOY_INDUCTION_DIR
    hf_dir: Path | None = None
    bos_token_id: int = TOY_BOS
    token_ids: torch.Tensor = field(default_factory=lambda: torch.arange(1, TOY_VOCAB))
    eval_length: int = TOY_EVAL_LENGTH

    def __post_init__(self) -> None:
        if self.arch is None:
            self.arch = ModelArch.from_config(self.hf.config.to_dict(), kind="causal_lm")
        if self.hf_dir is None:
            self.hf_dir = self.source_path

    def repeated_tokens(self, n: int, length: int = TOY_EVAL_LENGTH, seed: int = 0) -> torch.Tensor:
        """``repeated_tokens(n, length, seed)`` on this model's device."""
        return repeated_tokens(n, length, seed).to(self.device)


def repeated_tokens(n: int, length: int = TOY_EVAL_LENGTH, seed: int = 0) -> torch.Tensor:
    """(n, 1 + 2 * length) token ids ``[BOS] r r`` for the toy model, seeded.

    ``r`` is ``length`` distinct tokens drawn uniformly from 1 .. 63 (so each token occurs
    exactly once per copy).
    """
    from spectrascope.mech.metrics import repeated_random_tokens

    return repeated_random_tokens(n, length, seed, torch.arange(1, TOY_VOCAB), bos_token_id=TOY_BOS)


def load_toy_induction(device: str | torch.device = "cpu", path: str | Path | None = None) -> ToyModel:
    """Load the shipped toy induction model (or a checkpoint at ``path``) in eval mode.

    Raises:
        SpectrascopeError: the checkpoint is missing (the package data was not installed) or
            its MLPs are not zero.
    """
    from transformers import LlamaForCausalLM

    folder = Path(path) if path is not None else TOY_INDUCTION_DIR
    if not (folder / "config.json").exists() or not (folder / "model.safetensors").exists():
        raise SpectrascopeError(
            f"the toy induction checkpoint is missing ({folder}); recreate it with "
            "`python scripts/train_toy_induction.py`"
        )
    from spectrascope.models.tokenizer_cache import quiet_transformers

    with quiet_transformers():
        hf = LlamaForCausalLM.from_pretrained(
            str(folder),
            local_files_only=True,
            use_safetensors=True,
            attn_implementation="eager",
            dtype=torch.float32,
        )
    hf = hf.to(device).eval()
    for layer in hf.model.layers:
        for proj in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
            if proj.weight.count_nonzero() != 0:
                raise SpectrascopeError(f"{folder}: not attention-only (a nonzero MLP weight)")
            proj.weight.requires_grad_(False)
    return ToyModel(hf=hf, source_path=folder)
