"""Which parts of a prompt interact to produce the answer: SPEX / ProxySPEX via ``shapiq``.

The players are the prompt's words (whitespace-separated; for a token prompt, its tokens), the
last one held fixed (it is where the answer is read; BOS is never a player). A coalition S is
the prompt with every word outside S **removed** (the kept words joined with single spaces;
kept tokens in order for token prompts), and its value is the metric of the answer at the
last token: the logit difference answer - wrong, or the answer's log-probability without a
wrong answer. SPEX (Kang et al. 2025) and ProxySPEX (Butler et al. 2025) estimate a sparse
set of interactions from a budget of coalitions, far fewer than the 2^n an exhaustive game
needs; the index is Faith-Banzhaf (``FBII``), up to ``max_order``.

Beside them: single-token attributions, leave-one-out per token (the value drop when that
token alone is removed from the full prompt; one model call per token).

``shapiq`` 1.4 (MIT, maintained by the shapiq developers; PyPI) implements both estimators.
SPEX works out of the box; ProxySPEX needs ``lightgbm``, which this project does not install
(``method="proxyspex"`` says so in one line). SPEX's decoder (``galois``'s BCH codes) is
compiled by numba on its first call in a process: about 20-30 s on a 2-core machine, once.
The decoder's choices are discrete: a strong interaction comes back the same on every machine,
but which small terms (here, below about a seventh of the strongest) are kept or dropped can
change with the CPU's float32 rounding (measured on the toy induction prompt of the tests:
the planted pair 11.4-11.7 on three CPU code paths, the runner-up pairs 0-1.7 and not the same).

Model calls are batched and cached per distinct coalition; ``model_calls`` counts distinct
forward rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from spectrascope.circuits.layout import circuit_model, model_handle
from spectrascope.circuits.tasks import Task, single_token
from spectrascope.errors import SpectrascopeError
from spectrascope.mech.metrics import bos_token_id

INTERACTION_METHODS = ("spex", "proxyspex")
DEFAULT_BUDGET = 1000


@dataclass
class PromptInteractions:
    """Interactions among the words of one prompt.

    Attributes:
        prompt: the prompt (text, or token ids joined by spaces).
        players: the words (or tokens) that are players, in order.
        interactions: one row per estimated interaction with a nonzero value: ``players`` (tuple
            of player indices), ``words`` (joined), ``order``, ``value`` (metric units), sorted by
            |value|; the empty coalition's term is dropped.
        tokens: single-token attributions: ``position``, ``token``, ``player`` (the word it belongs
            to, -1 for BOS / the fixed last word), ``loo`` (value of the full prompt minus value
            with that token removed).
        full_value, empty_value: the game's value with every / no player.
        budget: the coalition budget asked; ``model_calls``: distinct coalitions evaluated by the
            estimator; ``loo_calls``: forwards of the leave-one-out attributions.
        method, seconds: the estimator and its wall time.
    """

    prompt: str
    players: list[str]
    interactions: pd.DataFrame
    tokens: pd.DataFrame
    full_value: float
    empty_value: float
    budget: int
    model_calls: int
    loo_calls: int
    method: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    def top(self, order: int | None = None, n: int = 5) -> pd.DataFrame:
        """The ``n`` largest interactions (optionally of one order)."""
        table = self.interactions if order is None else self.interactions[self.interactions["order"] == order]
        return table.head(n)


class _Game:
    """The value function of one prompt: coalitions (c, n_players) bool -> values (c,), cached."""

    def __init__(
        self,
        hf: torch.nn.Module,
        units: list[list[int]],
        prefix: list[int],
        suffix: list[int],
        answer: int,
        wrong: int | None,
        pad_id: int,
        batch_size: int,
    ) -> None:
        self.hf = hf
        self.units = units  # token ids of each player
        self.prefix, self.suffix = prefix, suffix
        self.answer, self.wrong = answer, wrong
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.cache: dict[bytes, float] = {}

    def ids(self, coalition: np.ndarray) -> list[int]:
        kept = [t for unit, keep in zip(self.units, coalition, strict=True) if keep for t in unit]
        return self.prefix + kept + self.suffix

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        coalitions = np.asarray(coalitions, dtype=bool).reshape(-1, len(self.units))
        keys = [c.tobytes() for c in coalitions]
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        by_key = {c.tobytes(): c for c in coalitions}
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            values = self.values([self.ids(by_key[k]) for k in chunk])
            self.cache.update(zip(chunk, values, strict=True))
        return np.array([self.cache[k] for k in keys])

    @torch.no_grad()
    def values(self, sequences: list[list[int]]) -> list[float]:
        """The metric after each token sequence (right padded into one forward)."""
        width = max(len(s) for s in sequences)
        device = next(self.hf.parameters()).device
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, seq in enumerate(sequences):
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
        logits = self.hf(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        last = logits[torch.arange(len(sequences)), mask.sum(1).to(device) - 1].double()
        if self.wrong is not None:
            values = last[:, self.answer] - last[:, self.wrong]
        else:
            values = torch.log_softmax(last, dim=-1)[:, self.answer]
        return values.cpu().tolist()


def prompt_interactions(
    model: Any,
    prompt: str | list[int] | torch.Tensor,
    answer: str | int,
    wrong: str | int | None = None,
    *,
    budget: int = DEFAULT_BUDGET,
    max_order: int = 2,
    method: str = "spex",
    seed: int = 0,
    batch_size: int = 64,
) -> PromptInteractions:
    """SPEX / ProxySPEX interactions among the words of ``prompt`` (see the module docstring).

    Args:
        model: anything the circuit API takes (``toy-induction``, a name, a loaded model ...).
        prompt: text (players = words) or token ids (players = tokens; a leading BOS is kept
            and is not a player).
        answer, wrong: single tokens (text with its leading space, or ids).
        budget: coalitions the estimator may ask for (SPEX uses at most this many, often fewer).
        max_order: largest interaction order reported.
    """
    method = method.lower()
    if method not in INTERACTION_METHODS:
        raise SpectrascopeError(f"unknown interaction method {method!r}; use {', '.join(INTERACTION_METHODS)}")
    model = model_handle(model)
    hf, tokenizer, _ = circuit_model(model)
    units, prefix, suffix, words, text = _players(prompt, tokenizer, model)
    if len(units) < 2:
        raise SpectrascopeError(
            f"the prompt {text!r} has {len(units)} player(s) besides its last word: interactions need at least 2"
        )
    answer_id = answer if isinstance(answer, int) else _token(tokenizer, answer, "answer")
    wrong_id = wrong if wrong is None or isinstance(wrong, int) else _token(tokenizer, wrong, "wrong answer")
    pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    game = _Game(
        hf,
        units,
        prefix,
        suffix,
        int(answer_id),
        None if wrong_id is None else int(wrong_id),
        int(pad if pad is not None else 0),
        batch_size,
    )
    started = time.perf_counter()
    estimator = _estimator(method, len(units), max_order, seed)
    try:
        values = estimator.approximate(budget=budget, game=game)
    except ValueError as err:
        raise SpectrascopeError(f"{method}: {err} (budget {budget} for {len(units)} players)") from None
    seconds = time.perf_counter() - started
    calls = len(game.cache)
    everyone, nobody = np.ones(len(units), dtype=bool), np.zeros(len(units), dtype=bool)
    full, empty = (float(v) for v in game(np.stack([everyone, nobody])))
    rows = []
    for players, index in values.interaction_lookup.items():
        value = float(values.values[index])
        if len(players) == 0 or value == 0.0:
            continue
        members = tuple(int(p) for p in players)
        rows.append(
            {"players": members, "words": " + ".join(words[p] for p in members), "order": len(members), "value": value}
        )
    interactions = pd.DataFrame(rows, columns=["players", "words", "order", "value"])
    interactions = interactions.reindex(interactions["value"].abs().sort_values(ascending=False).index)
    tokens = _leave_one_out(game, units, prefix, suffix, tokenizer, full)
    return PromptInteractions(
        prompt=text,
        players=words,
        interactions=interactions.reset_index(drop=True),
        tokens=tokens,
        full_value=full,
        empty_value=empty,
        budget=budget,
        model_calls=calls,
        loo_calls=len(tokens),
        method=method,
        seconds=seconds,
        notes=[f"exhaustive game: 2^{len(units)} = {2 ** len(units)} coalitions"],
    )


def task_interactions(model: Any, task: Task, n_prompts: int = 3, **kwargs: Any) -> list[PromptInteractions]:
    """Interactions of the first ``n_prompts`` clean prompts of a text task (logit-difference or
    probability metrics; ``prob_diff`` tasks have no single answer and are refused)."""
    if task.clean_text is None:
        raise SpectrascopeError(f"task {task.name!r} has no text prompts; pass token prompts to prompt_interactions")
    if task.metric.kind == "prob_diff":
        raise SpectrascopeError(f"task {task.name!r} scores a set of answers; interactions need one answer token")
    model = model_handle(model)
    assert task.metric.answer is not None  # logit_diff and prob metrics have one answer per prompt
    results = []
    for i in range(min(n_prompts, task.n)):
        wrong = None if task.metric.wrong is None else int(task.metric.wrong[i, 0])
        results.append(prompt_interactions(model, task.clean_text[i], int(task.metric.answer[i, 0]), wrong, **kwargs))
    return results


def _estimator(method: str, n: int, max_order: int, seed: int):
    try:
        from shapiq import SPEX, ProxySPEX
    except ImportError:
        raise SpectrascopeError(
            "input interactions need the shapiq package: pip install 'spectrascope[interactions]'"
        ) from None
    if method == "spex":
        return SPEX(n=n, index="FBII", max_order=max_order, random_state=seed)
    try:
        return ProxySPEX(n=n, index="FBII", max_order=max_order, random_state=seed)
    except ImportError:
        raise SpectrascopeError("ProxySPEX needs lightgbm, which is not installed; use method='spex'") from None


def _token(tokenizer: Any, text: str, what: str) -> int:
    if tokenizer is None:
        raise SpectrascopeError(f"a text {what} needs a model with a tokenizer; pass a token id")
    return single_token(tokenizer, text, what)


def _players(
    prompt: str | list[int] | torch.Tensor, tokenizer: Any, model: Any
) -> tuple[list[list[int]], list[int], list[int], list[str], str]:
    """(token ids per player, fixed prefix ids, fixed suffix ids, player labels, prompt as text)."""
    if isinstance(prompt, str):
        if tokenizer is None:
            raise SpectrascopeError("a text prompt needs a model with a tokenizer")
        words = prompt.split()
        if not words:
            raise SpectrascopeError("the prompt is empty")
        prefix = tokenizer("")["input_ids"]  # the special tokens the tokenizer puts in front (if any)
        units = [tokenizer((" " if i else "") + w, add_special_tokens=False)["input_ids"] for i, w in enumerate(words)]
        # a player keeps its leading space, so removing words leaves single spaces between the rest
        return units[:-1], list(prefix), units[-1], words[:-1], prompt
    ids = [int(t) for t in (prompt.flatten().tolist() if isinstance(prompt, torch.Tensor) else prompt)]
    bos = bos_token_id(model)
    prefix = [ids[0]] if ids and bos is not None and ids[0] == bos else []
    body = ids[len(prefix) :]
    if not body:
        raise SpectrascopeError("the token prompt is empty")
    return [[t] for t in body[:-1]], prefix, [body[-1]], [str(t) for t in body[:-1]], " ".join(map(str, ids))


def _leave_one_out(
    game: _Game, units: list[list[int]], prefix: list[int], suffix: list[int], tokenizer: Any, full: float
) -> pd.DataFrame:
    """Per token: the value drop when that token alone is removed (BOS and the fixed last word included)."""
    owners = [-1] * len(prefix) + [p for p, unit in enumerate(units) for _ in unit] + [-1] * len(suffix)
    ids = prefix + [t for unit in units for t in unit] + suffix
    sequences = [ids[:i] + ids[i + 1 :] for i in range(len(ids))]
    values = []
    for start in range(0, len(sequences), game.batch_size):
        values.extend(game.values(sequences[start : start + game.batch_size]))
    label = (lambda t: tokenizer.decode([t])) if tokenizer is not None else str
    return pd.DataFrame(
        {
            "position": range(len(ids)),
            "token": [label(t) for t in ids],
            "player": owners,
            "loo": [full - v for v in values],
        }
    )
