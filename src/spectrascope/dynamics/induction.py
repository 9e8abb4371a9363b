"""Induction heads forming: the toy induction model's training, with checkpoints.

The model and data are those of the shipped toy (:mod:`spectrascope.mech.toy_models`): a
2-layer attention-only ``LlamaForCausalLM`` (d_model 64, 4 heads per layer, vocab 64, MLP
weights zero and frozen) trained on ``[BOS] r r`` with ``r`` distinct random tokens whose
length is drawn per step from 6..30; AdamW (lr 3e-3, betas 0.9 / 0.98, weight decay 0.01 on
the matrices), linear warm-up over the first 5% of steps then cosine decay, gradient norm
clipped at 1; batch 64; one seed. ``scripts/train_toy_induction.py`` (which made the shipped
checkpoint) calls :func:`train_induction`.

Measured at every eval step and checkpoint: ``train_loss``, the loss of that step's training
batch; on a fixed held-out batch (L = 20, 32 sequences):

- ``test_loss``: next-token loss over all positions;
- ``first_copy_loss``: next-token loss on the first copy (unpredictable: ~ ln 63 = 4.14);
- ``in_context_loss``: loss on the second copy but its first token (predictable in context
  by an induction circuit);
- ``icl_score``: in_context_loss - first_copy_loss (Olsson et al. 2022's in-context learning
  score: negative once the model uses the context);
- per head (``head_scores``): induction, previous-token and duplicate-token scores; the
  table keeps the maximum over heads (``induction_score``, ``previous_token_score``) and the
  per-head values go to ``head_scores_over_steps``.

Events: the *in-context step* is the first step at which in_context_loss <= half the
first-copy loss; the *induction step* the first step at which some head's induction score
reaches 0.5. The phase change is when both happen, within the eval grid.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from ..progress import progress_bar
from .series import Checkpoint
from .training import adamw, checkpoint_folder, log_schedule, save_checkpoint

MIN_LENGTH, MAX_LENGTH = 6, 30
EVAL_SEED, EVAL_SEQUENCES = 12345, 32
METRIC_COLUMNS = [
    "step",
    "train_loss",
    "test_loss",
    "first_copy_loss",
    "in_context_loss",
    "icl_score",
    "induction_score",
    "previous_token_score",
    "top_induction_head",
]


@dataclass(frozen=True)
class InductionConfig:
    """Everything that defines a toy induction run (defaults: the shipped model's recipe)."""

    steps: int = 3000
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    seed: int = 0
    n_checkpoints: int = 40
    eval_every: int = 50
    stop_after: int | None = None

    @classmethod
    def quick(cls) -> InductionConfig:
        """The shortened run of the tests: the first 450 steps of the 3000-step run (the same
        learning-rate schedule, so the same trajectory, phase change included), 12 checkpoints."""
        return cls(stop_after=450, n_checkpoints=12, eval_every=25)

    @property
    def trained_steps(self) -> int:
        """Steps actually trained: ``stop_after`` (a prefix of the ``steps``-long schedule) or ``steps``."""
        return self.steps if self.stop_after is None else min(self.stop_after, self.steps)

    def to_dict(self) -> dict:
        return asdict(self)


def build_model(seed: int) -> torch.nn.Module:
    """A freshly initialized attention-only toy model (MLPs zero and frozen, their norm frozen)."""
    from transformers import LlamaForCausalLM

    from ..mech.toy_models import toy_induction_config, zero_mlps

    torch.manual_seed(seed)
    config = toy_induction_config()
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config)
    zero_mlps(model)
    for layer in model.model.layers:  # the MLP's input norm has no effect: freeze it too
        layer.post_attention_layernorm.weight.requires_grad_(False)
    return model


def train_induction(
    config: InductionConfig,
    on_step: Callable[[int, torch.nn.Module, float], None] | None = None,
    log: Callable[[str], None] | None = None,
    log_every: int = 250,
) -> torch.nn.Module:
    """Train the toy induction model.

    ``on_step(step, model, train_loss)`` runs before update ``step`` (step 0 = the
    initialization) with the loss of that step's training batch, and once more after the
    last update (step ``config.trained_steps``, on one more batch drawn the same way).
    Returns the trained model in eval mode (MLP weights exactly zero)."""
    from ..mech.metrics import repeated_random_tokens
    from ..mech.toy_models import TOY_BOS, TOY_VOCAB, zero_mlps

    model = build_model(config.seed)
    model.train()
    optimizer = adamw(model, config.lr, config.weight_decay)
    warmup = max(1, config.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / config.steps))),
    )
    lengths = torch.Generator().manual_seed(config.seed + 1)
    pool = torch.arange(1, TOY_VOCAB)
    start = time.time()

    def batch_loss(step: int) -> tuple[int, torch.Tensor]:
        length = int(torch.randint(MIN_LENGTH, MAX_LENGTH + 1, (1,), generator=lengths))
        ids = repeated_random_tokens(
            config.batch, length, seed=config.seed * 1_000_003 + step + 7, token_ids=pool, bos_token_id=TOY_BOS
        )
        logits = model(input_ids=ids, use_cache=False).logits
        return length, F.cross_entropy(logits[:, :-1].reshape(-1, TOY_VOCAB), ids[:, 1:].reshape(-1))

    for step in range(config.trained_steps):
        length, loss = batch_loss(step)
        if on_step is not None:  # evaluation draws no global randomness: training is unchanged
            on_step(step, model, loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if log is not None and (step % log_every == 0 or step == config.trained_steps - 1):
            log(f"step {step:5d}  L={length:2d}  loss {loss.item():.3f}  ({time.time() - start:.0f} s)")
    if on_step is not None:
        with torch.no_grad():
            _, loss = batch_loss(config.trained_steps)
        on_step(config.trained_steps, model, loss.item())
    zero_mlps(model)  # still exactly zero (frozen), asserted again by the loader
    return model.eval()


@dataclass
class InductionRun:
    """What :func:`train_with_checkpoints` produced: ``metrics`` (columns :data:`METRIC_COLUMNS`),
    ``scores`` (step, layer, head, induction, previous_token, duplicate_token), the saved
    ``checkpoints``, and ``seconds`` of wall time."""

    config: InductionConfig
    metrics: pd.DataFrame
    scores: pd.DataFrame
    checkpoints: list[Checkpoint]
    seconds: float
    extra: dict = field(default_factory=dict)


def evaluate(model: torch.nn.Module) -> tuple[dict, pd.DataFrame]:
    """(copy losses and top head scores, per-head scores) of the model on the fixed eval batch."""
    from ..mech.head_scores import head_scores
    from ..mech.metrics import repeated_loss
    from ..mech.toy_models import TOY_EVAL_LENGTH, ToyModel

    toy = ToyModel(hf=model)
    was_training = model.training
    model.eval()
    everything = repeated_loss(toy, n_seq=EVAL_SEQUENCES, seq_len=TOY_EVAL_LENGTH, seed=EVAL_SEED, copy="all")(toy)
    first = repeated_loss(toy, n_seq=EVAL_SEQUENCES, seq_len=TOY_EVAL_LENGTH, seed=EVAL_SEED, copy="first")(toy)
    second = repeated_loss(toy, n_seq=EVAL_SEQUENCES, seq_len=TOY_EVAL_LENGTH, seed=EVAL_SEED, copy="second")(toy)
    scores = head_scores(toy, n_seq=EVAL_SEQUENCES, seq_len=TOY_EVAL_LENGTH, seed=EVAL_SEED, batch_size=EVAL_SEQUENCES)
    model.train(was_training)
    top = scores.loc[scores["induction"].idxmax()]
    row = {
        "test_loss": everything,
        "first_copy_loss": first,
        "in_context_loss": second,
        "icl_score": second - first,
        "induction_score": float(scores["induction"].max()),
        "previous_token_score": float(scores["previous_token"].max()),
        "top_induction_head": f"{int(top['layer'])}.{int(top['head'])}",
    }
    return row, scores


def train_with_checkpoints(
    config: InductionConfig, checkpoint_root: str | Path, show_progress: bool = False
) -> InductionRun:
    """Train (:func:`train_induction`), saving checkpoints on a log-spaced schedule under
    ``checkpoint_root/step<N>/`` and measuring at every eval step and checkpoint."""
    start = time.perf_counter()
    last = config.trained_steps
    save_at = set(log_schedule(last, config.n_checkpoints))
    root = Path(checkpoint_root)
    rows, score_frames, saved = [], [], []
    with progress_bar("training (induction)", total=last + 1, enabled=show_progress) as advance:

        def on_step(step: int, model: torch.nn.Module, train_loss: float) -> None:
            if step in save_at or step % config.eval_every == 0 or step == last:
                row, scores = evaluate(model)
                rows.append({"step": step, "train_loss": train_loss, **row})
                score_frames.append(scores.assign(step=step))
            if step in save_at:
                saved.append(Checkpoint(step, save_checkpoint(model, checkpoint_folder(root, step))))
            advance(1)

        train_induction(config, on_step=on_step)
    scores = pd.concat(score_frames, ignore_index=True)
    scores = scores[["step"] + [c for c in scores.columns if c != "step"]]
    return InductionRun(config, pd.DataFrame(rows, columns=METRIC_COLUMNS), scores, saved, time.perf_counter() - start)
