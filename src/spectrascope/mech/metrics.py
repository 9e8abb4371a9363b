"""Evaluation batches and the metrics that ablation measures effects on.

A :class:`Metric` is a scalar computed from a model's logits on a fixed batch of token ids.
It knows its batch (``input_ids``, ``attention_mask``), which query positions' logits it
reads (``logit_positions``, so a forward can skip the unembedding elsewhere), and how to turn
logits of rows of that batch into one value and one weight per row (:meth:`Metric.row_scores`,
a :class:`RowScores`); the metric is the weighted mean of the rows' values
(:meth:`Metric.score`), and ``metric(model)`` runs one forward and scores it. Per-row values
are what bootstrap intervals over texts resample (one row = one text or sequence); sweeps
stack several copies of (chunks of) the batch in one forward and score each block of rows.

Metrics:

- :class:`NextTokenLoss`: mean next-token cross-entropy (nats) over the target tokens,
  padding ignored, optionally restricted to some target positions (e.g. the second copy
  of a repeated sequence: :func:`repeated_loss`; a corpus: :func:`corpus_loss`);
- :class:`LogitDifference`: logit of the correct minus the logit of the wrong next token at
  the last real position of each prompt, averaged (:func:`logit_difference`);
- :class:`JointMetric`: several metrics of one batch read from the same forwards (one sweep
  instead of one per metric).

Repeated random sequences (the induction setting): :func:`repeated_random_tokens`,
:func:`repeated_batch`; the ordinary (non-special) token ids of a model: :func:`token_pool`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from spectrascope.errors import SpectrascopeError
from spectrascope.models.handle import ModelLike, as_model, device_of, hf_module

# ----------------------------------------------------------------------------- model handles


def as_hf(model: ModelLike) -> torch.nn.Module:
    """The Hugging Face module of a model (``as_model(model).hf``; the name mech modules use)."""
    return hf_module(model)


model_device = device_of
"""The device of a model's parameters (:func:`spectrascope.models.handle.device_of`)."""


def bos_token_id(model: ModelLike) -> int | None:
    """The BOS token: the handle's ``bos_token_id``, else the config's, else the tokenizer's."""
    return as_model(model).bos_token_id


def token_pool(model: ModelLike) -> torch.Tensor:
    """(n,) the ordinary token ids of a model, for random sequences: no special tokens.

    A handle with ``token_ids`` (the toy models) gives them directly. Otherwise: ids
    ``0 .. vocab - 1`` (vocab = the smaller of the config's and the tokenizer's size)
    minus the tokenizer's special and added tokens and the config's BOS / EOS / PAD ids.
    """
    handle = as_model(model)
    explicit = handle.token_ids
    if explicit is not None:
        return torch.as_tensor(explicit, dtype=torch.long)
    config = handle.config
    vocab = int(config.vocab_size)
    excluded: set[int] = set()
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(config, key, None)
        if value is None:
            continue
        excluded.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    tokenizer = handle.tokenizer
    if tokenizer is not None:
        vocab = min(vocab, len(tokenizer))
        excluded.update(int(i) for i in tokenizer.all_special_ids)
        excluded.update(int(i) for i in getattr(tokenizer, "added_tokens_decoder", {}) or {})
    keep = torch.ones(vocab, dtype=torch.bool)
    for i in excluded:
        if 0 <= i < vocab:
            keep[i] = False
    return torch.nonzero(keep).flatten()


# ----------------------------------------------------------------------------- repeated sequences

REPEAT_LENGTH = 20
"""Default length of the repeated random sequence (the induction setting)."""


def repeated_random_tokens(
    n: int, length: int, seed: int, token_ids: torch.Tensor, bos_token_id: int | None = None
) -> torch.Tensor:
    """(n, [1 +] 2 * length) token ids: ``[BOS] r r`` with ``r`` random, one row per sequence.

    ``r`` is ``length`` *distinct* tokens drawn uniformly from ``token_ids`` (each token occurs
    exactly once per copy, so "the earlier occurrence" of a second-copy token is unique).
    Seeded by ``seed`` alone (a private generator; global RNG state untouched).
    """
    if n < 1:
        raise SpectrascopeError(f"the number of sequences must be at least 1 (got {n})")
    if length < 2:
        raise SpectrascopeError(f"the repeated sequence length must be at least 2 (got {length})")
    pool = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    if length > pool.numel():
        raise SpectrascopeError(f"cannot draw {length} distinct tokens from a vocabulary of {pool.numel()}")
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.rand(n, pool.numel(), generator=generator).argsort(dim=1)[:, :length]
    first = pool[order]
    rows = torch.cat([first, first], dim=1)
    if bos_token_id is not None:
        rows = torch.cat([torch.full((n, 1), int(bos_token_id), dtype=torch.long), rows], dim=1)
    return rows


@dataclass(frozen=True)
class RepeatedBatch:
    """A batch of repeated random sequences ``[BOS] r r`` and where each copy lies.

    Attributes:
        input_ids: (n, offset + 2 * length) token ids.
        length: length of ``r``.
        offset: 1 with a BOS token, else 0. The first copy is positions
            ``offset .. offset + length - 1``, the second ``offset + length .. offset + 2 * length - 1``.
    """

    input_ids: torch.Tensor
    length: int
    offset: int

    @property
    def n_positions(self) -> int:
        return int(self.input_ids.shape[1])

    def first_copy_targets(self) -> torch.Tensor:
        """(pos,) bool: targets of the first copy whose prediction is possible at all
        (positions ``max(1, offset) .. offset + length - 1``: every first-copy token but one
        at position 0). In-context unpredictable: the loss here is ~ ln(vocab)."""
        mask = torch.zeros(self.n_positions, dtype=torch.bool)
        mask[max(1, self.offset) : self.offset + self.length] = True
        return mask

    def second_copy_targets(self) -> torch.Tensor:
        """(pos,) bool: second-copy targets predictable by induction (all but its first token,
        which follows the last first-copy token and is as unpredictable as the first copy)."""
        mask = torch.zeros(self.n_positions, dtype=torch.bool)
        mask[self.offset + self.length + 1 : self.offset + 2 * self.length] = True
        return mask


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` puts its BOS token in front of encoded text by itself."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    try:
        ids = tokenizer("a")["input_ids"]
    except Exception:  # noqa: BLE001 - any tokenizer object; when it fails, fall back on its flag
        return bool(getattr(tokenizer, "add_bos_token", False))
    return bool(ids) and int(ids[0]) == int(bos)


def default_prepend_bos(model: ModelLike) -> bool:
    """Whether repeated sequences start with BOS by default: as the model sees text.

    A toy handle (``bos_token_id`` attribute) or a model without a tokenizer: when the model
    has a BOS token. With a tokenizer: when the tokenizer adds BOS itself (SmolLM2's does not:
    its ``<|im_start|>`` "BOS" opens chat turns and raises the second-copy loss from ~3.9 to
    ~5.7 nats).
    """
    handle = as_model(model)
    if getattr(handle.source, "bos_token_id", None) is not None or handle.tokenizer is None:
        return handle.bos_token_id is not None
    return tokenizer_adds_bos(handle.tokenizer)


def repeated_batch(
    model: ModelLike, n: int, length: int, seed: int = 0, prepend_bos: bool | None = None
) -> RepeatedBatch:
    """Repeated random sequences for ``model``: ordinary tokens (:func:`token_pool`), with the
    model's BOS token in front as asked (None: :func:`default_prepend_bos`), on its device."""
    model = as_model(model)
    if prepend_bos is None:
        prepend_bos = default_prepend_bos(model)
    bos = bos_token_id(model) if prepend_bos else None
    if prepend_bos and bos is None:
        raise SpectrascopeError("prepend_bos=True but the model has no BOS token")
    ids = repeated_random_tokens(n, length, seed, token_pool(model), bos)
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions is not None and ids.shape[1] > int(max_positions):
        raise SpectrascopeError(
            f"repeated sequences of length {length} need {ids.shape[1]} positions; the model has "
            f"{max_positions} (use a length of at most {(int(max_positions) - (bos is not None)) // 2})"
        )
    return RepeatedBatch(ids.to(model.device), int(length), 0 if bos is None else 1)


# ----------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class RowScores:
    """One value and one weight per row of a metric's batch; the metric is their weighted mean.

    Attributes:
        values: (rows,) float64, e.g. a text's mean next-token loss, or a prompt's logit difference.
        weights: (rows,) float64 >= 0, e.g. a text's number of scored tokens (1 for a prompt).
    """

    values: torch.Tensor
    weights: torch.Tensor

    def reduce(self) -> torch.Tensor:
        """sum(values * weights) / sum(weights), a float64 scalar tensor."""
        return (self.values * self.weights).sum() / self.weights.sum()

    def totals(self) -> torch.Tensor:
        """(rows,) values * weights: what the rows add to the weighted sum (differentiable)."""
        return self.values * self.weights

    @staticmethod
    def cat(parts: Sequence[RowScores]) -> RowScores:
        """Rows of several chunks, in order."""
        return RowScores(torch.cat([p.values for p in parts]), torch.cat([p.weights for p in parts]))

    def detached(self) -> RowScores:
        """The same numbers, on the CPU, out of the autograd graph."""
        return RowScores(self.values.detach().cpu(), self.weights.detach().cpu())


class Metric:
    """A scalar from the logits of a model on a fixed batch (see the module docstring).

    Attributes:
        name: the metric's name in tables.
        input_ids: (batch, pos) token ids; None for the batch-free metrics (:meth:`LogitDifference.at`,
            a function of the logits), which score whatever logits they are given.
        attention_mask: (batch, pos) 1 for real tokens, 0 for padding; None = all real.
        higher_is_worse: True for a loss; False for a logit difference. Ablation "damage"
            is the change in the bad direction.
    """

    name: str = "metric"
    higher_is_worse: bool = True
    input_ids: torch.Tensor | None
    attention_mask: torch.Tensor | None = None

    @property
    def logit_positions(self) -> torch.Tensor | None:
        """(k,) sorted query positions whose logits :meth:`score` reads; None = all positions."""
        return None

    @property
    def logits_to_keep(self) -> torch.Tensor | int | None:
        """What the forward's ``logits_to_keep`` may be for this metric: positions (a tensor), the
        last k (an int), or None (every position)."""
        return self.logit_positions

    @property
    def n_rows(self) -> int:
        """Rows of the batch (texts, sequences or prompts)."""
        assert self.input_ids is not None  # a batch-free metric has no rows
        return int(self.input_ids.shape[0])

    def row_scores(self, logits: torch.Tensor, rows: slice = slice(None)) -> RowScores:
        """Per-row values and weights from logits (r, k, vocab) of rows ``rows`` of this batch at
        :attr:`logit_positions` (every position when that is None)."""
        raise NotImplementedError

    def score(self, logits: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """The metric over rows ``rows`` (all by default) from their logits; a float64 scalar tensor."""
        return self.row_scores(logits, rows).reduce()

    def forward_kwargs(self, model: ModelLike) -> dict[str, Any]:
        """Keyword arguments of the model forward for this batch (logits only where read,
        when the model's forward takes ``logits_to_keep``)."""
        kwargs: dict[str, Any] = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        return {**kwargs, **keep_logits(model, self.logits_to_keep)}

    @torch.no_grad()
    def __call__(self, model: ModelLike) -> float:
        """Run the model on the batch and return the metric."""
        output = as_hf(model)(**self.forward_kwargs(model), use_cache=False)
        return float(self.score(output.logits))

    @torch.no_grad()
    def rows(self, model: ModelLike) -> RowScores:
        """Run the model on the batch and return the per-row scores (what intervals resample)."""
        output = as_hf(model)(**self.forward_kwargs(model), use_cache=False)
        return self.row_scores(output.logits).detached()


def keep_logits(model: ModelLike, positions: torch.Tensor | int | None) -> dict[str, Any]:
    """``{"logits_to_keep": positions}`` when the model's forward takes it and positions are
    given (a tensor of positions, or an int k: the last k), else ``{}`` (all positions are
    computed; :meth:`Metric.row_scores` accepts both)."""
    if positions is None:
        return {}
    forward = as_hf(model).forward
    try:
        takes = "logits_to_keep" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        takes = False
    return {"logits_to_keep": positions} if takes else {}


def _valid_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones_like(input_ids, dtype=torch.bool)
    if attention_mask.shape != input_ids.shape:
        raise SpectrascopeError(
            f"attention_mask has shape {tuple(attention_mask.shape)}; input_ids has {tuple(input_ids.shape)}"
        )
    return attention_mask.to(torch.bool)


class NextTokenLoss(Metric):
    """Mean next-token cross-entropy (nats) over the batch's target tokens.

    A target is the token at position ``t >= 1``, predicted from the logits at ``t - 1``; it
    counts when both tokens are real (padding ignored) and, with ``target_positions``, when
    ``target_positions`` selects it: a (pos,) or (batch, pos) bool mask, or a sequence of
    position indices. The mean is over all counted targets of the batch (a token-weighted
    corpus loss).
    """

    higher_is_worse = True
    input_ids: torch.Tensor

    def __init__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        target_positions: torch.Tensor | Sequence[int] | None = None,
        name: str = "loss",
    ) -> None:
        if input_ids.ndim != 2 or input_ids.shape[1] < 2:
            raise SpectrascopeError(f"a loss needs (batch, pos) token ids with pos >= 2 (got {tuple(input_ids.shape)})")
        self.name = name
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        valid = _valid_mask(input_ids, attention_mask)
        targets = torch.zeros_like(valid)
        targets[:, 1:] = valid[:, 1:] & valid[:, :-1]
        if target_positions is not None:
            targets &= _position_mask(target_positions, input_ids.shape).to(targets.device)
        if not targets.any():
            raise SpectrascopeError("the loss has no target tokens (all padding, or no position selected)")
        self.targets = targets  # (batch, pos) bool: which tokens are predicted and scored
        query = targets[:, 1:].any(dim=0)  # query position t - 1 for target t
        self._positions = torch.nonzero(query).flatten()

    @property
    def logit_positions(self) -> torch.Tensor:
        return self._positions

    @property
    def n_targets(self) -> int:
        return int(self.targets.sum())

    @staticmethod
    def cat(parts: Sequence[NextTokenLoss], name: str = "loss") -> NextTokenLoss:
        """The rows of several losses as one batch (right-padded to the widest; their scored
        targets kept), rows in order: one sweep over several domains' texts."""
        width = max(p.input_ids.shape[1] for p in parts)

        def padded(t: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.pad(t.long(), (0, width - t.shape[1]))

        ids = torch.cat([padded(p.input_ids) for p in parts])
        mask = torch.cat([padded(_valid_mask(p.input_ids, p.attention_mask)) for p in parts])
        targets = torch.cat([padded(p.targets) for p in parts]).bool()
        return NextTokenLoss(ids, mask, target_positions=targets, name=name)

    def row_lengths(self) -> torch.Tensor:
        """(batch,) one past each row's last real token (0 for a row of padding only)."""
        valid = _valid_mask(self.input_ids, self.attention_mask)
        positions = torch.arange(1, valid.shape[1] + 1, device=valid.device)
        return (valid * positions).amax(dim=1)

    def subset(self, rows: torch.Tensor) -> NextTokenLoss:
        """The loss on rows ``rows`` (in that order) with the trailing columns that are padding in
        all of them dropped: the same per-row scores at a fraction of the cost when short texts
        were padded to a long one's length (a causal model's real tokens never see later columns)."""
        width = max(2, int(self.row_lengths()[rows].max()))
        mask = None if self.attention_mask is None else self.attention_mask[rows, :width]
        return NextTokenLoss(
            self.input_ids[rows, :width], mask, target_positions=self.targets[rows, :width], name=self.name
        )

    def row_scores(self, logits: torch.Tensor, rows: slice = slice(None)) -> RowScores:
        """Per row: the mean loss over its counted targets (0 when it has none), weighted by
        their number; the weighted mean is the token-weighted loss of those rows."""
        positions = self._positions.to(logits.device)
        if logits.shape[1] != positions.numel():  # given every position
            logits = logits[:, positions]
        target_ids = self.input_ids[rows][:, positions + 1].to(logits.device)
        counted = self.targets[rows][:, positions + 1].to(logits.device)
        flat = token_nll(logits.float().reshape(-1, logits.shape[-1]), target_ids.reshape(-1))
        nll = flat.view(target_ids.shape).double()
        n = counted.sum(dim=1).double()
        total = (nll * counted).sum(dim=1)
        return RowScores(total / n.clamp_min(1.0), n)


NLL_CHUNK_ROWS = 64
"""Positions whose cross-entropy :func:`token_nll` takes at a time."""


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(n,) negative log-likelihood of ``targets`` (n,) under ``logits`` (n, vocab), float32.

    torch's fused log-softmax + pick (a quarter faster than logsumexp - gather), taken
    :data:`NLL_CHUNK_ROWS` positions at a time: its (n, vocab) log-probabilities then stay in
    the cache (64 x 49,152 float32 = 12.6 MB) instead of a write and a read of up to the
    sweeps' 256 MB of logits; the same numbers bit for bit, 25-35 % faster on 1,365 positions of
    SmolLM2's vocabulary (59-77 vs 92-98 ms, two cores, alternating in one process).
    """
    if logits.shape[0] <= NLL_CHUNK_ROWS:
        return F.cross_entropy(logits, targets, reduction="none")
    return torch.cat(
        [
            F.cross_entropy(
                logits[start : start + NLL_CHUNK_ROWS], targets[start : start + NLL_CHUNK_ROWS], reduction="none"
            )
            for start in range(0, logits.shape[0], NLL_CHUNK_ROWS)
        ]
    )


def _position_mask(selection: torch.Tensor | Sequence[int], shape: torch.Size) -> torch.Tensor:
    batch, n_pos = shape
    if isinstance(selection, torch.Tensor) and selection.dtype == torch.bool:
        if selection.shape == (n_pos,):
            return selection.unsqueeze(0).expand(batch, n_pos)
        if selection.shape == (batch, n_pos):
            return selection
        raise SpectrascopeError(
            f"target_positions mask has shape {tuple(selection.shape)}; expected ({n_pos},) or ({batch}, {n_pos})"
        )
    index = torch.as_tensor(selection, dtype=torch.long).flatten()
    if index.numel() and (index.min() < -n_pos or index.max() >= n_pos):
        raise SpectrascopeError(f"target position out of range for sequences of {n_pos} tokens")
    mask = torch.zeros(n_pos, dtype=torch.bool)
    mask[index] = True
    return mask.unsqueeze(0).expand(batch, n_pos)


class LogitDifference(Metric):
    """``logit[correct] - logit[wrong]`` per prompt, at each prompt's last real token; the metric is
    the mean over prompts.

    Args:
        input_ids: (batch, pos) prompts (right padding allowed with ``attention_mask``).
        correct, wrong: the correct / wrong next token, one id for all prompts or (batch,) ids.

    :meth:`at` builds the batch-free form used by patching: a fixed position (default the last)
    and one correct / wrong token for every row of whatever logits it is given.
    """

    higher_is_worse = False

    def __init__(
        self,
        input_ids: torch.Tensor,
        correct: int | torch.Tensor,
        wrong: int | torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        name: str = "logit_diff",
    ) -> None:
        if input_ids.ndim != 2 or input_ids.shape[1] < 1:
            raise SpectrascopeError(f"prompts must be (batch, pos) token ids (got {tuple(input_ids.shape)})")
        batch = input_ids.shape[0]
        self.name = name
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        valid = _valid_mask(input_ids, attention_mask)
        if not valid[:, 0].all():
            raise SpectrascopeError("logit difference needs right-padded prompts with at least one real token")
        self.last = valid.long().sum(dim=1) - 1  # (batch,) last real position
        self.correct = torch.as_tensor(correct, dtype=torch.long, device=input_ids.device).expand(batch).clone()
        self.wrong = torch.as_tensor(wrong, dtype=torch.long, device=input_ids.device).expand(batch).clone()
        self._positions: torch.Tensor | None = torch.unique(self.last)
        self.position: int | None = None

    @classmethod
    def at(cls, correct: int, wrong: int, position: int = -1, name: str = "logit_diff") -> LogitDifference:
        """The batch-free logit difference: ``logits[:, position, correct] - logits[:, position, wrong]``
        for every row (patching scores copies of one prompt with it)."""
        metric = cls.__new__(cls)
        metric.name = name
        metric.input_ids = None
        metric.attention_mask = None
        metric.correct = torch.tensor([int(correct)])
        metric.wrong = torch.tensor([int(wrong)])
        metric.position = int(position)
        metric._positions = None
        return metric

    @property
    def logit_positions(self) -> torch.Tensor | None:
        return self._positions

    @property
    def logits_to_keep(self) -> torch.Tensor | int | None:
        if self.position is None:
            return self._positions
        return 1 if self.position == -1 else None

    def row_scores(self, logits: torch.Tensor, rows: slice | torch.Tensor = slice(None)) -> RowScores:
        """Per prompt: its logit difference, weight 1."""
        index = torch.arange(logits.shape[0], device=logits.device)
        vocab = logits.shape[-1]
        for token in (self.correct, self.wrong):
            if int(token.min()) < 0 or int(token.max()) >= vocab:
                raise SpectrascopeError(f"logit difference: token id outside the vocabulary (0..{vocab - 1})")
        if self.position is not None:  # batch-free: one position (the last of the kept ones when cut)
            picked = logits[:, -1 if logits.shape[1] == 1 else self.position].double()
            diff = picked[:, int(self.correct[0])] - picked[:, int(self.wrong[0])]
            return RowScores(diff, torch.ones_like(diff))
        assert self._positions is not None  # set by __init__, the form with a batch (position None)
        positions = self._positions.to(logits.device)
        last = self.last[rows].to(logits.device)
        # logits at the kept positions only (column = index among them), or at every position
        column = torch.searchsorted(positions, last) if logits.shape[1] == positions.numel() else last
        picked = logits[index, column].double()  # (r, vocab)
        diff = picked[index, self.correct[rows].to(logits.device)] - picked[index, self.wrong[rows].to(logits.device)]
        return RowScores(diff, torch.ones_like(diff))

    def __repr__(self) -> str:
        where = f"position={self.position}" if self.position is not None else f"{self.n_rows} prompts"
        return f"logit_diff({int(self.correct[0])}, {int(self.wrong[0])}, {where})"


class LogitsFunction(Metric):
    """Any function of the logits as a metric: ``fn(logits (r, pos, vocab)) -> (r,)`` values per row
    (a function that returns one number is called once per row); weight 1 per row. Higher is
    better unless ``higher_is_worse``."""

    def __init__(
        self, fn: Callable[[torch.Tensor], torch.Tensor], name: str | None = None, higher_is_worse: bool = False
    ) -> None:
        self.fn = fn
        fn_name: str = getattr(fn, "__name__", "metric")
        self.name = name or fn_name
        self.higher_is_worse = higher_is_worse
        self.input_ids = None
        self.attention_mask = None

    def row_scores(self, logits: torch.Tensor, rows: slice | torch.Tensor = slice(None)) -> RowScores:
        batch = logits.shape[0]
        values = torch.as_tensor(self.fn(logits))
        if not (values.dim() == 1 and values.shape[0] == batch):
            if values.numel() != 1:
                raise SpectrascopeError(
                    f"the metric returned shape {tuple(values.shape)} for logits of shape {tuple(logits.shape)}; "
                    "it must return one value per row, shape (batch,), or a single number"
                )
            values = (
                values.reshape(1)
                if batch == 1
                else torch.stack([torch.as_tensor(self.fn(logits[i : i + 1])).reshape(()) for i in range(batch)])
            )
        values = values.double()
        return RowScores(values, torch.ones_like(values))


class JointMetric(Metric):
    """Several metrics of one batch read from the same forwards, each at its own positions (e.g.
    the loss on the first and on the second copy of repeated sequences): a sweep over it runs
    every forward once instead of once per metric.

    Its row scores are (rows, parts): column i holds part i's values and weights (:meth:`split`
    separates them; :meth:`~spectrascope.mech.ablation_sweep.SweepRows.split` a whole sweep's).
    The forward keeps the logits at the union of the parts' positions.

    Raises:
        SpectrascopeError: no part, parts on different batches, or parts that disagree on which
            direction is worse.
    """

    def __init__(self, parts: Sequence[Metric], name: str = "joint") -> None:
        if not parts:
            raise SpectrascopeError("a joint metric needs at least one metric")
        first = parts[0]
        for part in parts:
            if part.input_ids is None or first.input_ids is None or not torch.equal(part.input_ids, first.input_ids):
                raise SpectrascopeError("the metrics of a joint metric must score one batch (the same input ids)")
            if not torch.equal(
                _valid_mask(part.input_ids, part.attention_mask), _valid_mask(first.input_ids, first.attention_mask)
            ):
                raise SpectrascopeError("the metrics of a joint metric must score one batch (the same attention mask)")
            if part.higher_is_worse != first.higher_is_worse:
                raise SpectrascopeError("the metrics of a joint metric must agree on which direction is worse")
        self.parts = list(parts)
        self.name = name
        self.input_ids = first.input_ids
        self.attention_mask = first.attention_mask
        self.higher_is_worse = first.higher_is_worse
        positions = [p.logit_positions for p in self.parts]
        self._positions: torch.Tensor | None = (
            None
            if any(q is None for q in positions)
            else torch.unique(torch.cat([q for q in positions if q is not None]))
        )

    @property
    def logit_positions(self) -> torch.Tensor | None:
        return self._positions

    def row_scores(self, logits: torch.Tensor, rows: slice = slice(None)) -> RowScores:
        """(rows, parts) values and weights: each part scored on its own positions' logits."""
        scores = [part.row_scores(self._logits_of(part, logits), rows) for part in self.parts]
        return RowScores(
            torch.stack([s.values for s in scores], dim=1), torch.stack([s.weights for s in scores], dim=1)
        )

    def _logits_of(self, part: Metric, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` at ``part``'s positions: columns of the union when the forward kept only
        those, else (every position given) as they are (each part then picks its own)."""
        own = part.logit_positions
        if own is None or self._positions is None or logits.shape[1] != self._positions.numel():
            return logits
        return logits[:, torch.searchsorted(self._positions, own).to(logits.device)]

    @staticmethod
    def split(scores: RowScores) -> list[RowScores]:
        """Per part, its (rows,) row scores from a joint metric's (rows, parts) ones."""
        return [RowScores(scores.values[:, i], scores.weights[:, i]) for i in range(scores.values.shape[1])]

    def score(self, logits: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """(parts,) each part's metric over rows ``rows``, float64."""
        return torch.stack([s.reduce() for s in self.split(self.row_scores(logits, rows))])

    def __call__(self, model: ModelLike) -> float:
        raise SpectrascopeError(
            "a joint metric has one value per part: score its forward with .score(logits) or .rows(model)"
        )


def as_metric(metric: Metric | Callable[[torch.Tensor], torch.Tensor]) -> Metric:
    """A :class:`Metric` from a metric or a plain function of the logits (:class:`LogitsFunction`)."""
    if isinstance(metric, Metric):
        return metric
    if callable(metric):
        return LogitsFunction(metric)
    raise SpectrascopeError(f"a metric must be a Metric or a function of the logits (got {type(metric).__name__})")


# ----------------------------------------------------------------------------- factories


def repeated_loss(
    model: ModelLike,
    n_seq: int = 8,
    seq_len: int = REPEAT_LENGTH,
    seed: int = 0,
    copy: str = "second",
    prepend_bos: bool | None = None,
) -> NextTokenLoss:
    """Loss on repeated random sequences, restricted to one copy.

    ``copy="second"`` (name ``induction_loss``): the second copy's targets but its first token,
    which induction predicts; ``"first"`` (``first_copy_loss``): the unpredictable first copy;
    ``"all"`` (``repeated_loss``): every target.
    """
    as_model(model).require_causal_lm("a next-token loss")
    batch = repeated_batch(model, n_seq, seq_len, seed, prepend_bos)
    if copy == "second":
        return NextTokenLoss(batch.input_ids, target_positions=batch.second_copy_targets(), name="induction_loss")
    if copy == "first":
        return NextTokenLoss(batch.input_ids, target_positions=batch.first_copy_targets(), name="first_copy_loss")
    if copy == "all":
        return NextTokenLoss(batch.input_ids, name="repeated_loss")
    raise SpectrascopeError(f"unknown copy {copy!r}: use first, second or all")


def text_loss(
    model: ModelLike,
    texts: Sequence[str],
    max_tokens: int = 1024,
    seq_len: int = 128,
    name: str = "loss",
    min_texts: int = 1,
) -> NextTokenLoss:
    """Loss on the first ``texts``, one right-padded batch (one text per row; padding ignored).

    Texts are tokenized one by one (truncated to ``seq_len`` tokens) until ``max_tokens`` target
    tokens are collected (a text of n tokens scores n - 1: its first token is never predicted).

    Raises:
        SpectrascopeError: no tokenizer, ``max_tokens`` < 2, or fewer than ``min_texts`` usable texts.
    """
    from spectrascope.activations.batching import pad_rows

    model = as_model(model).require_causal_lm("a next-token loss")
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise SpectrascopeError(f"model {model.name!r} has no tokenizer: cannot compute a loss on text")
    rows = [ids for _, ids in loss_texts(tokenizer, texts, max_tokens, seq_len)]
    if len(rows) < max(1, min_texts):
        raise SpectrascopeError(f"{name}: only {len(rows)} text(s) of at least 2 tokens; need {max(1, min_texts)}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids, mask = pad_rows(rows, pad)
    return NextTokenLoss(input_ids.to(model.device), mask.to(model.device), name=name)


def loss_texts(tokenizer: Any, texts: Sequence[str], max_tokens: int, seq_len: int) -> list[tuple[int, list[int]]]:
    """(index in ``texts``, token ids) of the rows of :func:`text_loss`: the first texts of at
    least 2 tokens, each truncated to ``seq_len``, until ``max_tokens`` target tokens (n - 1 of a
    text of n) are collected. Counting targets, not tokens, keeps a budget of short texts
    honest: 4,096 tokens of ~9-token arithmetic texts score only ~3,700."""
    if max_tokens < 2:
        raise SpectrascopeError(f"max_tokens must be at least 2 (got {max_tokens})")
    rows: list[tuple[int, list[int]]] = []
    total = 0
    for index, text in enumerate(texts):
        ids = tokenizer(text, truncation=True, max_length=seq_len)["input_ids"]
        if len(ids) < 2:
            continue
        rows.append((index, list(ids)))
        total += len(ids) - 1
        if total >= max_tokens:
            break
    return rows


def corpus_loss(
    model: ModelLike, corpus: str = "code", max_tokens: int = 1024, seq_len: int = 128, seed: int = 0
) -> NextTokenLoss:
    """Loss on the first texts of a corpus (built-in name or path): :func:`text_loss`."""
    from spectrascope.corpora import load_corpus

    return text_loss(model, load_corpus(corpus, seed=seed).texts, max_tokens, seq_len, name=f"loss[{corpus}]")


def logit_difference(
    model: ModelLike, prompts: str | Sequence[str], correct: str | int, wrong: str | int
) -> LogitDifference:
    """Logit difference ``correct - wrong`` after text prompts; tokens as ids or single-token strings."""
    model = as_model(model)
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise SpectrascopeError("a text prompt needs a model with a tokenizer")
    batch = model.tokenize([prompts] if isinstance(prompts, str) else list(prompts))

    def single(token: str | int) -> int:
        if isinstance(token, int):
            return token
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise SpectrascopeError(f"{token!r} is {len(ids)} tokens; the logit difference needs single tokens")
        return int(ids[0])

    return LogitDifference(batch["input_ids"], single(correct), single(wrong), batch.get("attention_mask"))
