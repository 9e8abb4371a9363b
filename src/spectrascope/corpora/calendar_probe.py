"""Labeled month and weekday texts for probing calendar knowledge (the research notes'
calendar experiment): balanced classes, from the built-in ``calendar`` corpus plus templates.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from ..errors import OptionError
from .dates import MONTHS, ORDINALS, WEEKDAYS
from .registry import load_corpus

#: Extra month contexts (the ``calendar`` corpus has only a few per month; see :func:`calendar_texts`).
MONTH_TEMPLATES: tuple[str, ...] = (
    "{name} was born in {w}.",
    "The festival in {city} takes place every {w}.",
    "We moved to {city} in {w}.",
    "Her contract with the company ends in {w}.",
    "The report is due at the end of {w}.",
    "It was a cold and rainy morning in {w}.",
    "The conference in {city} starts in early {w}.",
    "{name} always takes a long holiday in {w}.",
    "The next board meeting is scheduled for {w}.",
    "The shop reopened on {day} {w}.",
    "{name}'s birthday is on the {ordinal} of {w}.",
    "Prices in {city} went up sharply last {w}.",
)

#: Extra weekday contexts.
WEEKDAY_TEMPLATES: tuple[str, ...] = (
    "Let's meet on {w}.",
    "{name} works from home every {w}.",
    "The museum in {city} is closed on {w}.",
    "See you next {w}.",
    "The package from {city} arrived on {w}.",
    "The exam was moved to {w}.",
    "{name} goes swimming every {w}.",
    "The market in {city} opens early on {w}.",
    "We usually order pizza on {w}.",
    "The deadline for the project is this {w}.",
    "{name} called me last {w}.",
    "The train to {city} does not run on {w}.",
)

_NAMES = ("Anna", "Ben", "Carlos", "Dana", "Elif", "Farah", "George", "Hana", "Ivan", "Julia", "Kofi", "Lena")
_CITIES = ("Paris", "Lagos", "Tokyo", "Lima", "Oslo", "Cairo", "Denver", "Madrid", "Seoul", "Perth", "Quito", "Rome")

#: Calendar targets: corpus label column, class names (index = class), templates.
CALENDAR_TARGETS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}


def calendar_targets() -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    if not CALENDAR_TARGETS:
        CALENDAR_TARGETS["month"] = ("month", MONTHS, MONTH_TEMPLATES)
        CALENDAR_TARGETS["weekday"] = ("weekday", WEEKDAYS, WEEKDAY_TEMPLATES)
    return CALENDAR_TARGETS


def calendar_texts(
    target: str = "month", max_texts: int = 240, seed: int = 0, position: str = "word"
) -> tuple[list[str], np.ndarray, list[str]]:
    """Balanced texts naming a month (``target="month"``) or a weekday, with their classes.

    Each class gets ``max_texts // K`` texts: first distinct statements of the built-in
    ``calendar`` corpus (at most half), then sentences from :data:`MONTH_TEMPLATES` /
    :data:`WEEKDAY_TEMPLATES` with seeded fillers. ``position="word"``: the corpus
    statements whose labeled month/weekday is not their first word, distinct up to that
    word (a causal model sees nothing after it); ``position="last"``: the corpus statements
    that end with the labeled word (their last token is the period right after it), as
    all template sentences do.

    Returns:
        ``(texts, classes, words)``: classes (n,) int (January = 0, Monday = 0) and the
        class word of each text (its probe position for ``position="word"``).
    """
    table = calendar_targets()
    if target not in table:
        raise OptionError(f"unknown calendar target {target!r}: use {' or '.join(table)}")
    if position not in ("word", "last"):
        raise OptionError(f"calendar position must be 'word' or 'last' (got {position!r})")
    column, names, templates = table[target]
    n_classes = len(names)
    per_class = max_texts // n_classes
    if per_class < 2:
        raise OptionError(f"max_texts must be at least {2 * n_classes} for {target} ({n_classes} classes)")
    corpus = load_corpus("calendar", seed=seed)
    labels = corpus.labels
    offset = 1 if column == "month" else 0  # corpus months are 1..12, weekdays 0..6
    pools: dict[int, list[str]] = {k: [] for k in range(n_classes)}
    seen: set[str] = set()
    for text, value, answer in zip(corpus.texts, labels[column], labels["answer"], strict=True):
        if pd.isna(value):
            continue
        k = int(value) - offset
        word = names[k]
        start = text.find(word)
        if start <= 0:  # absent or the first word: no context before it
            continue
        if position == "last" and answer != word:
            continue
        key = text[: start + len(word)] if position == "word" else text
        if key not in seen:
            seen.add(key)
            pools[k].append(text)
    rng = random.Random(seed)
    texts: list[str] = []
    classes: list[int] = []
    for k in range(n_classes):
        from_corpus = rng.sample(pools[k], min(len(pools[k]), per_class // 2))
        chosen = list(from_corpus)
        attempts = 0
        while len(chosen) < per_class and attempts < 100 * per_class:
            attempts += 1
            sentence = rng.choice(templates).format(
                w=names[k],
                name=rng.choice(_NAMES),
                city=rng.choice(_CITIES),
                day=rng.randint(1, 28),
                ordinal=rng.choice(ORDINALS),
            )
            if sentence not in seen:
                seen.add(sentence)
                chosen.append(sentence)
        texts.extend(chosen)
        classes.extend([k] * len(chosen))
    order = list(range(len(texts)))
    rng.shuffle(order)
    texts = [texts[i] for i in order]
    class_array = np.array([classes[i] for i in order], dtype=np.int64)
    return texts, class_array, [names[k] for k in class_array]
