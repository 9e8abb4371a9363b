"""Generated corpora state true facts, and their labels agree with the text."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pytest

from spectrascope.corpora import load_corpus
from spectrascope.corpora.arithmetic import has_carry
from spectrascope.corpora.geography import country_table

MONTHS = ["January", "February", "March", "April", "May", "June", "July",
          "August", "September", "October", "November", "December"]  # fmt: skip
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
            "ninth", "tenth", "eleventh", "twelfth"]  # fmt: skip


def _days_in(month: int, year: int) -> int:
    start = dt.date(year, month, 1)
    end = dt.date(year + month // 12, month % 12 + 1, 1)
    return (end - start).days


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _check_calendar(text: str, row: pd.Series) -> None:
    """Assert that one calendar statement is true and matches its labels."""
    if m := re.fullmatch(r"(\w+) (\d+), (\d{4}) was a (\w+)\.", text):
        month, day, year = MONTHS.index(m[1]) + 1, int(m[2]), int(m[3])
        date = dt.date(year, month, day)
        assert DAYS[date.isoweekday() - 1] == m[4], text
        assert (row.month, row.day, row.year, row.weekday) == (month, day, year, date.weekday())
        assert row.answer == m[4]
    elif m := re.fullmatch(r"The month (after|before) (\w+) is (\w+)\.", text):
        month = MONTHS.index(m[2])
        expected = MONTHS[(month + (1 if m[1] == "after" else -1)) % 12]
        assert m[3] == expected, text
        assert row.month == month + 1
    elif m := re.fullmatch(r"The number of days in (\w+)(?: (\d{4}))? is (\d+)\.", text):
        month = MONTHS.index(m[1]) + 1
        if month == 2:
            assert m[2] is not None, "February needs a year"
        year = int(m[2]) if m[2] else 2001
        assert int(m[3]) == _days_in(month, year), text
        assert row.month == month
    elif m := re.fullmatch(r"The day (after|before) (\w+) is (\w+)\.", text):
        day = DAYS.index(m[2])
        assert m[3] == DAYS[(day + (1 if m[1] == "after" else -1)) % 7], text
        assert row.weekday == day
    elif m := re.fullmatch(r"The (\w+) month of the year is (\w+)\.", text):
        assert MONTHS.index(m[2]) == ORDINALS.index(m[1]), text
        assert row.month == MONTHS.index(m[2]) + 1
    elif m := re.fullmatch(r"Is (\d{4}) a leap year\? (Yes|No)\.", text):
        assert (m[2] == "Yes") == _is_leap(int(m[1])), text
        assert row.year == int(m[1])
    else:
        raise AssertionError(f"unrecognised calendar statement: {text!r}")


def test_calendar_statements_are_true_and_labelled():
    corpus = load_corpus("calendar")
    for text, (_, row) in zip(corpus.texts, corpus.labels.iterrows()):
        _check_calendar(text, row)
        assert text.endswith(f"{row.answer}.")
    assert corpus.labels["template"].nunique() == 8
    weekday_rows = corpus.labels[corpus.labels["template"] == "weekday_of_date"]
    assert set(weekday_rows["weekday"]) == set(range(7))
    assert set(weekday_rows["month"]) == set(range(1, 13))


def test_calendar_example_format():
    # The format of the example, checked against datetime independently.
    assert DAYS[dt.date(2021, 3, 3).weekday()] == "Wednesday"
    texts = load_corpus("calendar").texts
    assert any(re.fullmatch(r"[A-Z][a-z]+ \d{1,2}, \d{4} was a [A-Z][a-z]+day\.", t) for t in texts)


def _digit_sum(x: int) -> int:
    return sum(int(c) for c in str(x))


def test_arithmetic_statements_are_true_and_carry_labels_right():
    corpus = load_corpus("arithmetic")
    for text, (_, row) in zip(corpus.texts, corpus.labels.iterrows()):
        m = re.fullmatch(r"(\d+) ([+*]) (\d+) = (\d+)", text)
        assert m, text
        a, op, b, result = int(m[1]), m[2], int(m[3]), int(m[4])
        assert result == (a + b if op == "+" else a * b), text
        assert (row.a, row.b, row.result) == (a, b, result)
        assert row.operation == {"+": "add", "*": "mul"}[op]
        # Independent carry check: each carry lowers the digit sum by 9.
        carry_free_sum = _digit_sum(a) + _digit_sum(b) if op == "+" else _digit_sum(a) * _digit_sum(b)
        assert bool(row.has_carry) == (carry_free_sum != _digit_sum(result)), text
    counts = corpus.labels.groupby(["operation", "has_carry"]).size()
    assert len(counts) == 4 and counts.min() > len(corpus) / 8


@pytest.mark.parametrize(
    "operation,a,b,expected",
    [("add", 23, 45, False), ("add", 25, 45, True), ("add", 99, 1, True), ("add", 5, 4, False),
     ("mul", 12, 13, False), ("mul", 17, 6, True), ("mul", 4, 3, True), ("mul", 111, 3, False),
     ("mul", 33, 3, False), ("mul", 22, 22, False), ("mul", 23, 23, True)],
)  # fmt: skip
def test_has_carry_by_hand(operation, a, b, expected):
    assert has_carry(operation, a, b) is expected


KNOWN_CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Canada": "Ottawa", "Australia": "Canberra",
    "Brazil": "Brasília", "Kenya": "Nairobi", "Germany": "Berlin", "Egypt": "Cairo",
    "India": "New Delhi", "United States": "Washington, D.C.", "Peru": "Lima",
    "Nigeria": "Abuja", "Pakistan": "Islamabad", "New Zealand": "Wellington",
    "Switzerland": "Bern", "Turkmenistan": "Ashgabat", "Myanmar": "Naypyidaw",
}  # fmt: skip
KNOWN_CONTINENTS = {
    "France": "Europe", "Japan": "Asia", "Canada": "North America", "Chile": "South America",
    "Fiji": "Oceania", "Ghana": "Africa", "Mexico": "North America", "Egypt": "Africa",
}  # fmt: skip


def test_country_table_is_complete_and_consistent():
    table = country_table()
    assert list(table.columns) == ["country", "article", "capital", "continent"]
    assert len(table) >= 150
    assert table["country"].is_unique and table["capital"].is_unique
    assert set(table["continent"]) == {"Africa", "Asia", "Europe", "North America", "South America", "Oceania"}
    assert set(table["article"]) <= {"", "the"}
    facts = table.set_index("country")
    for country, capital in KNOWN_CAPITALS.items():
        assert facts.loc[country, "capital"] == capital
    for country, continent in KNOWN_CONTINENTS.items():
        assert facts.loc[country, "continent"] == continent


def test_geography_statements_match_the_table():
    corpus = load_corpus("geography")
    texts = set(corpus.texts)
    assert "The capital of France is Paris." in texts
    assert "Paris is in Europe." in texts
    assert "The capital of the United States is Washington, D.C." in texts
    assert "The Netherlands is in Europe." in texts
    assert "Q: What is the capital of Japan? A: Tokyo." in texts
    facts = country_table().set_index("country")
    for text, (_, row) in zip(corpus.texts, corpus.labels.iterrows()):
        assert facts.loc[row.country, "capital"] == row.capital
        assert facts.loc[row.country, "continent"] == row.continent
        assert text.endswith((f"{row.answer}.", row.answer))
        assert row.capital in text or row.country in text
        if isinstance(row.country_b, str):
            assert facts.loc[row.country_b, "continent"] == row.continent
            assert row.country_b != row.country
    n_countries = len(facts)
    single = corpus.labels[corpus.labels["country_b"].isna()]
    assert len(single) == 10 * n_countries  # every country in every single template
