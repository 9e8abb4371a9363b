"""Grokking on modular addition (Power et al. 2022; Nanda et al. 2023), trained here on CPU.

Task: a + b mod p for all p^2 pairs (a, b), as the 3-token input ``a b =`` (token p is
"="), the answer read from the logits at "=". A seeded ``train_fraction`` (30%) of the pairs
is the training set; the rest is the test set.

Model: a one-layer Hugging Face ``LlamaForCausalLM`` built from a config (so the tracer's
sites, the weights engine and the head tools all apply): d_model 64, 4 heads of 16, a gated
MLP of 256, RMSNorms, rotary positions, untied embedding and unembedding, vocab p + 1,
weights initialized with std 1/sqrt(d_model) = 0.125 (transformers' default of 0.02 is so
small that the model generalizes early, with no memorization phase to speak of).

Training: full batch, AdamW (lr 3e-3, betas 0.9 / 0.98, weight decay 1.0 on the matrices,
none on the norms), 10 warm-up steps, a constant rate, and a linear cool-down to 0 over the
last 25% of the steps (after grokking: Adam at a constant rate keeps "slingshot" spikes
coming, in which train and test accuracy drop for tens of steps, so a constant-rate run may
end inside one); one seed sets the split and the initialization. Checkpoints on a
log-spaced schedule; train loss and accuracy at every eval step come from the training
forward pass (the parameters after that many updates), test loss and accuracy from a
forward on the test pairs.

Why p = 59 and this size (measured on this project's 2-core machine, one torch thread,
other jobs running): the run memorizes (train accuracy 0.99) within ~50 steps while test
accuracy stays at ~0.30 (the pairs whose mirror (b, a) is in the training set) for well over
a thousand steps, then generalizes (seed 0: test accuracy 0.5 at step 2240, 0.999 at the
end); the 3000 steps take about 2.5 minutes of CPU time. In exploratory runs (an
earlier form of this loop), p = 97 with 30% of the pairs had so many training pairs that it
generalized almost as soon as it memorized (init std 0.02, lr 1e-3: train accuracy 1 and
test accuracy 0.6 at step 200, 0.99 by step 900) at 3x the cost per step, and transformers' default init std of 0.02
generalized early at p = 59 too (test accuracy 0.3 -> 0.99 between steps 300 and 800);
p = 43 with d_model 32 groks but needs a stronger weight decay and shows slingshot spikes.
:meth:`GrokkingConfig.quick` is the shortened version the tests run. Checkpoints: 80 on a
log-spaced schedule (67 distinct steps), so that the late transition still falls
among a few checkpoints.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import SpectrascopeError
from ..progress import progress_bar
from .fourier import (
    excluded_loss,
    frequency_energy,
    key_frequencies,
    key_share,
    restricted_loss,
)
from .series import Checkpoint
from .training import adamw, checkpoint_folder, log_schedule, save_checkpoint

METRIC_COLUMNS = ["step", "train_loss", "test_loss", "train_acc", "test_acc"]


@dataclass(frozen=True)
class GrokkingConfig:
    """Everything that defines a grokking run (one seed controls all randomness)."""

    p: int = 59
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 256
    init_std: float = 0.125
    train_fraction: float = 0.3
    lr: float = 3e-3
    weight_decay: float = 1.0
    warmup: int = 10
    cooldown: float = 0.25
    steps: int = 3000
    n_checkpoints: int = 80
    eval_every: int = 10
    seed: int = 0

    @classmethod
    def quick(cls) -> GrokkingConfig:
        """The shortened run of the tests: p = 43, d_model 32, MLP 128, init std 0.1, weight decay
        1.5, 1500 steps, 16 checkpoints (memorized by step 100, test accuracy 0.5 at ~900,
        0.998 at the end on this machine)."""
        return cls(
            p=43, d_model=32, d_mlp=128, init_std=0.1, weight_decay=1.5, steps=1500, n_checkpoints=16, eval_every=20
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModularData:
    """All p^2 pairs: ``inputs`` (p^2, 3) token ids ``a b =`` in (a, b) row-major order,
    ``labels`` (p^2,) = (a + b) mod p, ``train`` (p^2,) bool, the training pairs."""

    inputs: torch.Tensor
    labels: torch.Tensor
    train: torch.Tensor

    @property
    def test(self) -> torch.Tensor:
        return ~self.train


def modular_addition(p: int, train_fraction: float, seed: int) -> ModularData:
    """The dataset of a + b mod p with a seeded training split of ``round(train_fraction * p^2)`` pairs."""
    if not 0.0 < train_fraction < 1.0:
        raise SpectrascopeError(f"train_fraction must be in (0, 1) (got {train_fraction})")
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    inputs = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    train = torch.zeros(p * p, dtype=torch.bool)
    train[order[: round(train_fraction * p * p)]] = True
    return ModularData(inputs, (a + b) % p, train)


def grokking_model(config: GrokkingConfig) -> torch.nn.Module:
    """A freshly initialized one-layer LlamaForCausalLM for the task (seeded by ``config.seed``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if config.d_model % config.n_heads:
        raise SpectrascopeError(f"d_model {config.d_model} is not a multiple of n_heads {config.n_heads}")
    hf_config = LlamaConfig(
        vocab_size=config.p + 1,
        hidden_size=config.d_model,
        intermediate_size=config.d_mlp,
        num_hidden_layers=1,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        head_dim=config.d_model // config.n_heads,
        max_position_embeddings=3,
        initializer_range=config.init_std,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        attention_bias=False,
        mlp_bias=False,
        architectures=["LlamaForCausalLM"],
    )
    hf_config._attn_implementation = "sdpa"
    torch.manual_seed(config.seed)
    return LlamaForCausalLM(hf_config)


def learning_rate_factor(config: GrokkingConfig, step: int) -> float:
    """The learning-rate multiplier at ``step``: linear warm-up over ``warmup`` steps, constant,
    then a linear cool-down to 0 over the last ``cooldown`` fraction of the steps."""
    warm = min(1.0, (step + 1) / max(1, config.warmup))
    cool_steps = config.cooldown * config.steps
    cool = min(1.0, (config.steps - step) / cool_steps) if cool_steps > 0 else 1.0
    return warm * cool


def _answer_logits(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """(n, vocab) logits at the "=" position."""
    return model(input_ids=inputs, use_cache=False, logits_to_keep=1).logits[:, -1, :]


def _loss_acc(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = F.cross_entropy(logits.double(), labels).item()
    return loss, (logits.argmax(dim=-1) == labels).double().mean().item()


@dataclass
class GrokkingRun:
    """What :func:`train_grokking` produced.

    Attributes:
        metrics: step, train_loss, test_loss, train_acc, test_acc (every ``eval_every`` steps
            and at every checkpoint).
        measures: per checkpoint: step, restricted_loss, excluded_loss, key_share (share of
            the embedding's energy in the final key frequencies), n_key (key frequencies of
            that checkpoint's own embedding), key_frequencies (its keys, strongest first),
            weight_norm (L2 norm of all parameters).
        energy: step, frequency, energy: the embedding's frequency energy per checkpoint.
        key_frequencies: of the final checkpoint, strongest first.
        checkpoints: the saved series.
        seconds: wall time of training (measures included).
    """

    config: GrokkingConfig
    metrics: pd.DataFrame
    measures: pd.DataFrame
    energy: pd.DataFrame
    key_frequencies: list[int]
    checkpoints: list[Checkpoint]
    seconds: float
    extra: dict = field(default_factory=dict)


def train_grokking(config: GrokkingConfig, checkpoint_root: str | Path, show_progress: bool = False) -> GrokkingRun:
    """Train the grokking model, saving checkpoints under ``checkpoint_root/step<N>/``.

    Uses the current torch thread count (the CLI sets one thread).
    """
    start = time.perf_counter()
    data = modular_addition(config.p, config.train_fraction, config.seed)
    model = grokking_model(config)
    model.train()
    optimizer = adamw(model, config.lr, config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: learning_rate_factor(config, s))
    save_at = set(log_schedule(config.steps, config.n_checkpoints))
    x_train, y_train = data.inputs[data.train], data.labels[data.train]
    x_test, y_test = data.inputs[data.test], data.labels[data.test]
    rows, saved, full_logits, embeddings, norms = [], [], {}, {}, {}
    root = Path(checkpoint_root)
    with progress_bar("training (grokking)", total=config.steps, enabled=show_progress) as advance:
        for step in range(config.steps + 1):
            logits = _answer_logits(model, x_train)
            loss = F.cross_entropy(logits, y_train)
            evaluate = step in save_at or step % config.eval_every == 0
            if evaluate:
                with torch.no_grad():
                    test_logits = _answer_logits(model, x_test)
                train_loss, train_acc = _loss_acc(logits.detach(), y_train)
                test_loss, test_acc = _loss_acc(test_logits, y_test)
                rows.append(
                    {
                        "step": step,
                        "train_loss": train_loss,
                        "test_loss": test_loss,
                        "train_acc": train_acc,
                        "test_acc": test_acc,
                    }
                )
            if step in save_at:
                everything = torch.empty(config.p**2, logits.shape[1])
                everything[data.train], everything[data.test] = logits.detach(), test_logits
                full_logits[step] = everything.numpy()
                embeddings[step] = model.model.embed_tokens.weight.detach()[: config.p].numpy().copy()
                norms[step] = float(torch.sqrt(sum((p.detach() ** 2).sum() for p in model.parameters())))
                saved.append(Checkpoint(step, save_checkpoint(model, checkpoint_folder(root, step))))
            if step == config.steps:
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            advance(1)
    measures, energy, keys = progress_measures(config, data, full_logits, embeddings, norms)
    return GrokkingRun(
        config, pd.DataFrame(rows, columns=METRIC_COLUMNS), measures, energy, keys, saved, time.perf_counter() - start
    )


def progress_measures(
    config: GrokkingConfig,
    data: ModularData,
    logits: dict[int, np.ndarray],
    embeddings: dict[int, np.ndarray],
    norms: dict[int, float],
) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
    """(measures, energy, final key frequencies) from the checkpoints' logits over all pairs
    and embeddings (see :class:`GrokkingRun` and :mod:`.fourier` for definitions)."""
    steps = sorted(logits)
    final_energy = frequency_energy(embeddings[steps[-1]])
    keys = key_frequencies(final_energy)
    labels, train, test = data.labels.numpy(), data.train.numpy(), data.test.numpy()
    rows, energy_rows = [], []
    for step in steps:
        energy = frequency_energy(embeddings[step])
        own = key_frequencies(energy)
        rows.append(
            {
                "step": step,
                "restricted_loss": restricted_loss(logits[step], labels, test, config.p, keys),
                "excluded_loss": excluded_loss(logits[step], labels, train, config.p, keys),
                "key_share": key_share(energy, keys),
                "n_key": len(own),
                "key_frequencies": " ".join(map(str, own)),
                "weight_norm": norms[step],
            }
        )
        energy_rows += [{"step": step, "frequency": k + 1, "energy": float(e)} for k, e in enumerate(energy)]
    return pd.DataFrame(rows), pd.DataFrame(energy_rows), keys
