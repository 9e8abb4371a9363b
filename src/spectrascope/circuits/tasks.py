"""Circuit tasks: clean prompts, corrupted prompts and a metric of the answer.

A :class:`Task` holds n prompt pairs as token ids: *clean* (the model does the task) and
*corrupted* (the evidence changed), of equal token length pair by pair (right padding
between pairs; one attention mask serves both), and a :class:`TaskMetric` that reduces the
logits at some positions of each prompt to one number per prompt. The task's value is the
mean over prompts; intervals bootstrap over prompts.

Metrics (:class:`TaskMetric`, per prompt, averaged over its scored positions):

- ``logit_diff``: ``logit[answer] - logit[wrong]``;
- ``prob``: the probability of ``answer`` (softmax over the vocabulary);
- ``prob_diff``: the summed probability of a set of good tokens minus that of a set of bad
  tokens (greater-than: years after the start year minus years up to it).

Built-in tasks (:data:`BUILTIN_TASKS`, :func:`builtin_task`):

- ``geography``: factual recall from the geography corpus' fact table,
  "The capital of France is" -> " Paris", corrupted by another country of the same prompt
  token length ("... of Italy is"; wrong answer " Rome"). Only countries whose capital is
  one token (with its leading space) can be scored; the task says how many were kept.
- ``induction``: repeated random tokens ``[BOS] r r`` (the induction setting); corrupted
  ``[BOS] s r`` with a first copy ``s`` disjoint from ``r``, so nothing in the second copy
  occurred before. Scored at every second-copy position but the last: the answer is the
  next token of ``r``, the wrong token the matching token of a third random sequence ``w``
  disjoint from both (not the next token of ``s``: along EAP-IG's path from corrupted to
  clean embeddings the first copy is a mix of ``s`` and ``r``, and a wrong token from ``s``
  would make attending to the right place *lower* the logit difference while alpha < 1/2).
  Works without a tokenizer.
- ``greater-than`` (Hanna et al. 2023; the ACDC task): "The war lasted from the year 1739 to
  the year 17" -> a year after 1739; corrupted start year ``..01``. With digit-by-digit
  tokenizers (SmolLM2) the scored token is the tens digit and start years end in 9, so a
  tens digit d continues to a later year exactly when d > the start's tens digit; with
  two-digit year tokens (GPT-2) the scored token is the two-digit year. ``prob_diff``.
- ``calendar``: successors, "The day after Monday is" -> " Tuesday" and "The month after
  March is" -> " April", corrupted by another weekday / month (wrong answer its successor).

User tasks: :func:`jsonl_task` reads a JSON-lines file of ``{"clean", "corrupted",
"answer"[, "wrong"]}`` (``logit_diff`` with a wrong answer, else ``prob``).

Bad input is one :class:`TaskError` line: an empty task file, a missing field, an answer
that is not a single token, a pair whose clean and corrupted prompts tokenize to different
lengths (pass ``on_mismatch="drop"`` to drop such pairs instead; the task's ``notes`` say
how many), a text task on a model without a tokenizer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from spectrascope.errors import SpectrascopeError

METRIC_KINDS = ("logit_diff", "prob", "prob_diff")


class TaskError(SpectrascopeError):
    """A task cannot be built from the input (file, prompts, answers)."""


# ----------------------------------------------------------------------------- metric


@dataclass
class TaskMetric:
    """A number per prompt from the logits at its scored positions.

    Attributes:
        kind: ``logit_diff``, ``prob`` or ``prob_diff``.
        positions: (n, k) query positions read (padded with any valid position).
        scored: (n, k) bool: which of the k positions count.
        answer: (n, k) answer token ids (``logit_diff``, ``prob``).
        wrong: (n, k) wrong token ids (``logit_diff``).
        candidates: (C,) token ids (``prob_diff``).
        good, bad: (n, C) bool masks over the candidates (``prob_diff``).
    """

    kind: str
    positions: torch.Tensor
    scored: torch.Tensor
    answer: torch.Tensor | None = None
    wrong: torch.Tensor | None = None
    candidates: torch.Tensor | None = None
    good: torch.Tensor | None = None
    bad: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in METRIC_KINDS:
            raise TaskError(f"unknown metric {self.kind!r}; use {', '.join(METRIC_KINDS)}")
        if self.positions.shape != self.scored.shape or self.positions.ndim != 2:
            raise TaskError("metric positions and scored mask must both be (n, k)")
        if not self.scored.any(dim=1).all():
            raise TaskError("every prompt needs at least one scored position")

    @property
    def n(self) -> int:
        return int(self.positions.shape[0])

    @property
    def keep(self) -> torch.Tensor:
        """(K,) sorted positions whose logits the metric reads (``logits_to_keep``)."""
        return torch.unique(self.positions)

    def per_row(self, logits: torch.Tensor) -> torch.Tensor:
        """(rows,) the metric of each row from logits (rows, K, vocab) at :attr:`keep`.

        ``rows`` is a multiple of n: copy j of the batch is rows ``j n .. (j + 1) n - 1``.
        Differentiable; float64 (the logits read are widened first).
        """
        rows = logits.shape[0]
        if rows % self.n:
            raise TaskError(f"logits for {rows} rows do not stack copies of the task's {self.n} prompts")
        copies = rows // self.n
        device = logits.device
        keep = self.keep.to(device)
        column = torch.searchsorted(keep, self.positions.to(device).contiguous()).repeat(copies, 1)  # (rows, k)
        row = torch.arange(rows, device=device)[:, None].expand_as(column)
        picked = logits[row, column]  # (rows, k, vocab)
        scored = self.scored.to(device).repeat(copies, 1)
        if self.kind == "logit_diff":
            assert self.answer is not None and self.wrong is not None  # a logit_diff metric has both
            answer, wrong = (t.to(device).repeat(copies, 1) for t in (self.answer, self.wrong))
            values = (
                picked.gather(-1, answer[..., None])[..., 0].double()
                - picked.gather(-1, wrong[..., None])[..., 0].double()
            )
        elif self.kind == "prob":
            picked = picked.double()
            assert self.answer is not None  # a prob metric has answers
            answer = self.answer.to(device).repeat(copies, 1)
            values = torch.softmax(picked, dim=-1).gather(-1, answer[..., None])[..., 0]
        else:
            assert self.candidates is not None and self.good is not None and self.bad is not None  # prob_diff
            probs = torch.softmax(picked.double(), dim=-1)[..., self.candidates.to(device)]  # (rows, k, C)
            good = self.good.to(device).repeat(copies, 1)[:, None, :].double()
            bad = self.bad.to(device).repeat(copies, 1)[:, None, :].double()
            values = (probs * good).sum(-1) - (probs * bad).sum(-1)
        values = values * scored
        return values.sum(dim=1) / scored.sum(dim=1)

    def subset(self, rows: torch.Tensor) -> TaskMetric:
        """The metric of the prompts ``rows`` only."""
        pick = lambda t: None if t is None else t[rows]
        return replace(
            self,
            positions=self.positions[rows],
            scored=self.scored[rows],
            answer=pick(self.answer),
            wrong=pick(self.wrong),
            good=pick(self.good),
            bad=pick(self.bad),
        )


# ----------------------------------------------------------------------------- task


@dataclass
class Task:
    """Prompt pairs and a metric.

    Attributes:
        name: the task's name in tables.
        clean_ids, corrupted_ids: (n, pos) token ids, equal lengths pair by pair.
        attention_mask: (n, pos) 1 = real token, right padding; None = no padding.
        metric: :class:`TaskMetric`.
        clean_text, corrupted_text: the prompts as text (None for token tasks).
        answer_text: the answers as text, for tables.
        notes: what building the task dropped or chose (one line each).
    """

    name: str
    clean_ids: torch.Tensor
    corrupted_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    metric: TaskMetric
    clean_text: list[str] | None = None
    corrupted_text: list[str] | None = None
    answer_text: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.clean_ids.shape != self.corrupted_ids.shape or self.clean_ids.ndim != 2:
            raise TaskError(
                f"clean and corrupted token ids must have the same (n, pos) shape "
                f"(got {tuple(self.clean_ids.shape)} and {tuple(self.corrupted_ids.shape)})"
            )
        if self.clean_ids.shape[0] < 1:
            raise TaskError(f"task {self.name!r} has no prompts")
        if self.metric.n != self.clean_ids.shape[0]:
            raise TaskError("the metric and the prompts disagree on the number of prompts")

    @property
    def n(self) -> int:
        return int(self.clean_ids.shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.clean_ids.shape[1])

    def to(self, device: torch.device | str) -> Task:
        """The task with its tensors on ``device``."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        m = self.metric
        metric = replace(
            m,
            positions=m.positions.to(device),
            scored=m.scored.to(device),
            answer=move(m.answer),
            wrong=move(m.wrong),
            candidates=move(m.candidates),
            good=move(m.good),
            bad=move(m.bad),
        )
        return replace(
            self,
            clean_ids=self.clean_ids.to(device),
            corrupted_ids=self.corrupted_ids.to(device),
            attention_mask=move(self.attention_mask),
            metric=metric,
        )

    def subset(self, rows: Sequence[int] | torch.Tensor) -> Task:
        """The task restricted to prompts ``rows``."""
        index = torch.as_tensor(rows, dtype=torch.long)
        pick_text = lambda texts: None if texts is None else [texts[int(i)] for i in index]
        mask = None if self.attention_mask is None else self.attention_mask[index]
        return replace(
            self,
            clean_ids=self.clean_ids[index],
            corrupted_ids=self.corrupted_ids[index],
            attention_mask=mask,
            metric=self.metric.subset(index.to(self.metric.positions.device)),
            clean_text=pick_text(self.clean_text),
            corrupted_text=pick_text(self.corrupted_text),
            answer_text=pick_text(self.answer_text),
        )


# ----------------------------------------------------------------------------- text tasks


def _tokenizer_of(model: Any, task: str) -> Any:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise TaskError(
            f"task {task!r} needs a model with a tokenizer (the toy model has none: use the induction task)"
        )
    return tokenizer


def single_token(tokenizer: Any, text: str, what: str = "answer") -> int:
    """The id of ``text`` as one token (no special tokens added); :class:`TaskError` otherwise."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise TaskError(
            f"{what} {text!r} is {len(ids)} tokens; circuit metrics need single-token answers "
            "(give the first token, with its leading space)"
        )
    return int(ids[0])


def _pad_pairs(clean: list[list[int]], corrupted: list[list[int]], pad_id: int) -> tuple[torch.Tensor, ...]:
    width = max(len(row) for row in clean)
    n = len(clean)
    clean_ids = torch.full((n, width), pad_id, dtype=torch.long)
    corrupted_ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, (a, b) in enumerate(zip(clean, corrupted, strict=True)):
        clean_ids[i, : len(a)] = torch.tensor(a)
        corrupted_ids[i, : len(b)] = torch.tensor(b)
        mask[i, : len(a)] = 1
    return clean_ids, corrupted_ids, mask, torch.tensor([len(a) for a in clean])


def text_task(
    tokenizer: Any,
    name: str,
    clean: Sequence[str],
    corrupted: Sequence[str],
    answers: Sequence[str],
    wrong: Sequence[str] | None = None,
    *,
    on_mismatch: str = "error",
    notes: Sequence[str] = (),
) -> Task:
    """A task from text prompt pairs with single-token answers, scored at each prompt's last token.

    Args:
        clean, corrupted, answers: one per pair; answers as text (with their leading space).
        wrong: wrong answers (metric ``logit_diff``); None: metric ``prob`` of the answer.
        on_mismatch: ``"error"`` (a pair whose prompts tokenize to different lengths is a
            :class:`TaskError`) or ``"drop"`` (such pairs are dropped and counted in ``notes``).
    """
    if on_mismatch not in ("error", "drop"):
        raise TaskError(f"on_mismatch must be 'error' or 'drop' (got {on_mismatch!r})")
    if not (len(clean) == len(corrupted) == len(answers)) or (wrong is not None and len(wrong) != len(clean)):
        raise TaskError("clean prompts, corrupted prompts and answers must come in equal numbers")
    keep_clean, keep_corrupted, answer_ids, wrong_ids, kept = [], [], [], [], []
    dropped = 0
    for i, (a, b) in enumerate(zip(clean, corrupted, strict=True)):
        ids_a = tokenizer(a)["input_ids"]
        ids_b = tokenizer(b)["input_ids"]
        if not ids_a:
            raise TaskError(f"prompt {i + 1} is empty")
        if len(ids_a) != len(ids_b):
            if on_mismatch == "error":
                raise TaskError(
                    f"prompt pair {i + 1}: the clean prompt {a!r} is {len(ids_a)} tokens, the corrupted "
                    f"{b!r} {len(ids_b)}; edge patching needs equal lengths (reword it, or drop such pairs)"
                )
            dropped += 1
            continue
        keep_clean.append(ids_a)
        keep_corrupted.append(ids_b)
        answer_ids.append(single_token(tokenizer, answers[i]))
        if wrong is not None:
            wrong_ids.append(single_token(tokenizer, wrong[i], "wrong answer"))
        kept.append(i)
    if not kept:
        raise TaskError(f"task {name!r}: no prompt pair tokenizes to equal clean and corrupted lengths")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    clean_ids, corrupted_ids, mask, lengths = _pad_pairs(keep_clean, keep_corrupted, int(pad))
    positions = (lengths - 1)[:, None]
    scored = torch.ones_like(positions, dtype=torch.bool)
    answer = torch.tensor(answer_ids)[:, None]
    if wrong is None:
        metric = TaskMetric("prob", positions, scored, answer=answer)
    else:
        metric = TaskMetric("logit_diff", positions, scored, answer=answer, wrong=torch.tensor(wrong_ids)[:, None])
    all_notes = list(notes)
    if dropped:
        all_notes.append(
            f"dropped {dropped} of {len(clean)} pairs whose clean and corrupted prompts tokenize to different lengths"
        )
    return Task(
        name,
        clean_ids,
        corrupted_ids,
        None if bool(mask.all()) else mask,
        metric,
        clean_text=[clean[i] for i in kept],
        corrupted_text=[corrupted[i] for i in kept],
        answer_text=[answers[i] for i in kept],
        notes=all_notes,
    )


def geography_task(model: Any, n: int = 24, seed: int = 0) -> Task:
    """Capital-of-country recall (see the module docstring); up to ``n`` pairs."""
    from spectrascope.corpora.geography import SINGLE_TEMPLATES, country_table

    tokenizer = _tokenizer_of(model, "geography")
    template = SINGLE_TEMPLATES["capital_of"][0]  # "the capital of {country} is {capital}"
    prefix = template.split("{capital}")[0].rstrip()
    facts = []
    for row in country_table().itertuples(index=False):
        country = f"{row.article} {row.country}".strip()
        prompt = prefix.format(country=country)
        prompt = prompt[0].upper() + prompt[1:]
        capital = " " + row.capital
        if len(tokenizer(capital, add_special_tokens=False)["input_ids"]) == 1:
            facts.append((prompt, capital, len(tokenizer(prompt)["input_ids"])))
    total = len(country_table())
    rng = random.Random(seed)
    order = list(range(len(facts)))
    rng.shuffle(order)
    clean, corrupted, answers, wrong = [], [], [], []
    for i in order:
        prompt, capital, length = facts[i]
        partners = [j for j in range(len(facts)) if j != i and facts[j][2] == length and facts[j][1] != capital]
        if not partners:
            continue
        j = rng.choice(partners)
        clean.append(prompt)
        corrupted.append(facts[j][0])
        answers.append(capital)
        wrong.append(facts[j][1])
        if len(clean) == n:
            break
    if not clean:
        raise TaskError("geography: no two countries with single-token capitals have prompts of equal token length")
    note = (
        f"{len(facts)} of {total} countries have a single-token capital; {len(clean)} pairs with a corrupting "
        "country of the same prompt length"
    )
    return text_task(tokenizer, "geography", clean, corrupted, answers, wrong, notes=[note])


def calendar_task(model: Any, n: int = 24, seed: int = 0) -> Task:
    """Weekday and month successors (see the module docstring); ``n`` pairs, half of each kind."""
    from spectrascope.corpora.dates import MONTHS, WEEKDAYS

    tokenizer = _tokenizer_of(model, "calendar")
    rng = random.Random(seed)
    clean, corrupted, answers, wrong = [], [], [], []
    for index in range(n):
        names, unit = (WEEKDAYS, "day") if index % 2 == 0 else (MONTHS, "month")
        a, b = rng.sample(range(len(names)), 2)
        clean.append(f"The {unit} after {names[a]} is")
        corrupted.append(f"The {unit} after {names[b]} is")
        answers.append(" " + names[(a + 1) % len(names)])
        wrong.append(" " + names[(b + 1) % len(names)])
    return text_task(tokenizer, "calendar", clean, corrupted, answers, wrong, on_mismatch="drop")


GREATER_THAN_NOUNS = (
    "war",
    "expedition",
    "siege",
    "drought",
    "famine",
    "reign",
    "journey",
    "campaign",
    "construction",
    "conflict",
    "occupation",
    "voyage",
)


def greater_than_task(model: Any, n: int = 24, seed: int = 0) -> Task:
    """Greater-than on years (see the module docstring); ``n`` pairs."""
    tokenizer = _tokenizer_of(model, "greater-than")
    rng = random.Random(seed)
    digits_split = len(tokenizer("1739", add_special_tokens=False)["input_ids"]) == 4
    if digits_split:
        candidates = [single_token(tokenizer, str(d), "digit") for d in range(10)]
    else:
        try:
            candidates = [single_token(tokenizer, f"{y:02d}", "year") for y in range(100)]
        except TaskError:
            raise TaskError(
                "greater-than needs a tokenizer that splits years into digits or into two-digit tokens"
            ) from None
    clean, corrupted, good, bad, starts = [], [], [], [], []
    for _ in range(n):
        century = rng.randint(11, 19)
        noun = rng.choice(GREATER_THAN_NOUNS)
        if digits_split:
            tens = rng.randint(1, 8)
            start = f"{century}{tens}9"
            good.append([d > tens for d in range(10)])
        else:
            tail = rng.randint(2, 98)
            start = f"{century}{tail:02d}"
            good.append([y > tail for y in range(100)])
        bad.append([not g for g in good[-1]])
        starts.append(start)
        clean.append(f"The {noun} lasted from the year {start} to the year {century}")
        corrupted.append(f"The {noun} lasted from the year {century}01 to the year {century}")
    ids_clean = [tokenizer(t)["input_ids"] for t in clean]
    ids_corrupted = [tokenizer(t)["input_ids"] for t in corrupted]
    if any(len(a) != len(b) for a, b in zip(ids_clean, ids_corrupted, strict=True)):
        raise TaskError("greater-than: the tokenizer gives the clean and corrupted start years different lengths")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    clean_ids, corrupted_ids, mask, lengths = _pad_pairs(ids_clean, ids_corrupted, int(pad))
    positions = (lengths - 1)[:, None]
    metric = TaskMetric(
        "prob_diff",
        positions,
        torch.ones_like(positions, dtype=torch.bool),
        candidates=torch.tensor(candidates),
        good=torch.tensor(good),
        bad=torch.tensor(bad),
    )
    unit = "tens digit" if digits_split else "two-digit year"
    return Task(
        "greater-than",
        clean_ids,
        corrupted_ids,
        None if bool(mask.all()) else mask,
        metric,
        clean_text=clean,
        corrupted_text=corrupted,
        answer_text=[f"after {s}" for s in starts],
        notes=[f"scored token: the {unit} after the century"],
    )


def induction_task(model: Any, n: int = 16, length: int = 20, seed: int = 0) -> Task:
    """Repeated random tokens (see the module docstring); ``n`` sequences of ``2 length`` tokens (+ BOS)."""
    from spectrascope.mech.metrics import bos_token_id, default_prepend_bos, token_pool

    if length < 2:
        raise TaskError(f"induction needs a repeated length of at least 2 (got {length})")
    pool = token_pool(model)
    if pool.numel() < 3 * length:
        raise TaskError(f"induction needs {3 * length} distinct tokens; the model has {pool.numel()}")
    bos = bos_token_id(model) if default_prepend_bos(model) else None
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.rand(n, pool.numel(), generator=generator).argsort(dim=1)[:, : 3 * length]
    r, s, w = pool[order[:, :length]], pool[order[:, length : 2 * length]], pool[order[:, 2 * length :]]
    clean = torch.cat([r, r], dim=1)
    corrupted = torch.cat([s, r], dim=1)
    offset = 0
    if bos is not None:
        column = torch.full((n, 1), int(bos), dtype=torch.long)
        clean, corrupted, offset = torch.cat([column, clean], 1), torch.cat([column, corrupted], 1), 1
    steps = torch.arange(length - 1)
    positions = (offset + length + steps)[None, :].expand(n, -1).clone()  # second copy's r_i, predicting r_{i+1}
    metric = TaskMetric(
        "logit_diff",
        positions,
        torch.ones_like(positions, dtype=torch.bool),
        answer=r[:, 1:].clone(),
        wrong=w[:, 1:].clone(),
    )
    return Task(
        "induction",
        clean,
        corrupted,
        None,
        metric,
        notes=[f"{n} sequences, repeated length {length}, BOS {'yes' if bos is not None else 'no'}"],
    )


BUILTIN_TASKS: dict[str, Callable[..., Task]] = {
    "geography": geography_task,
    "induction": induction_task,
    "greater-than": greater_than_task,
    "calendar": calendar_task,
}
"""Name -> builder ``(model, n, seed) -> Task``."""


def builtin_task(model: Any, name: str, n: int | None = None, seed: int = 0) -> Task:
    """A built-in task by name (:data:`BUILTIN_TASKS`), or a ``.jsonl`` task file."""
    key = name.strip().lower().replace("_", "-")
    if key in BUILTIN_TASKS:
        builder = BUILTIN_TASKS[key]
        return builder(model, seed=seed) if n is None else builder(model, n=n, seed=seed)
    if name.endswith(".jsonl") or Path(name).exists():
        return jsonl_task(model, name, n=n)
    raise TaskError(f"unknown task {name!r}; use {', '.join(BUILTIN_TASKS)} or a .jsonl file")


def jsonl_task(model: Any, path: str | Path, n: int | None = None, on_mismatch: str = "error") -> Task:
    """A user task from JSON lines ``{"clean": ..., "corrupted": ..., "answer": ...[, "wrong": ...]}``.

    Either every line has ``wrong`` (metric ``logit_diff``) or none has (metric ``prob``).
    """
    path = Path(path)
    if not path.exists():
        raise TaskError(f"{path}: no such task file")
    tokenizer = _tokenizer_of(model, str(path))
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise TaskError(f"{path}:{number}: not JSON ({err})") from None
        if not isinstance(record, dict):
            raise TaskError(f"{path}:{number}: each line must be a JSON object")
        missing = [key for key in ("clean", "corrupted", "answer") if not isinstance(record.get(key), str)]
        if missing:
            raise TaskError(f"{path}:{number}: missing or non-text field(s) {', '.join(missing)}")
        records.append(record)
    if not records:
        raise TaskError(f"{path}: the task file has no prompts (expected JSON lines with clean, corrupted, answer)")
    with_wrong = [isinstance(r.get("wrong"), str) for r in records]
    if any(with_wrong) and not all(with_wrong):
        raise TaskError(f"{path}: give a wrong answer on every line or on none")
    records = records[:n] if n else records
    wrong = [r["wrong"] for r in records] if all(with_wrong) else None
    return text_task(
        tokenizer,
        path.stem,
        [r["clean"] for r in records],
        [r["corrupted"] for r in records],
        [r["answer"] for r in records],
        wrong,
        on_mismatch=on_mismatch,
    )
