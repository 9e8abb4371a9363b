"""Circuit tasks: metrics by hand, the built-in tasks on SmolLM2's tokenizer and the toy, user JSONL
tasks, and bad input as one clear line."""

from __future__ import annotations

import json
import types

import pytest
import torch

from spectrascope.circuits.tasks import (
    Task,
    TaskError,
    TaskMetric,
    builtin_task,
    calendar_task,
    geography_task,
    greater_than_task,
    induction_task,
    jsonl_task,
)
from spectrascope.mech.toy_models import load_toy_induction
from spectrascope.models.loaded import load_model


@pytest.fixture(scope="module")
def smollm2():
    loaded = load_model("smollm2-135m")
    return types.SimpleNamespace(hf=loaded.hf, tokenizer=loaded.tokenizer)


def _logits() -> torch.Tensor:
    """(2 rows, 2 kept positions, vocab 4) with easy numbers."""
    return torch.tensor([[[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]], [[4.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]])


def test_metrics_by_hand():
    positions = torch.tensor([[2, 7], [2, 2]])  # kept positions are (2, 7): columns 0 and 1
    scored = torch.tensor([[True, True], [True, False]])
    answer, wrong = torch.tensor([[3, 0], [0, 0]]), torch.tensor([[0, 1], [1, 1]])
    logit_diff = TaskMetric("logit_diff", positions, scored, answer=answer, wrong=wrong)
    assert logit_diff.keep.tolist() == [2, 7]
    assert logit_diff.per_row(_logits()).tolist() == [(3.0 + 0.0) / 2, 4.0]
    prob = TaskMetric("prob", positions, scored, answer=answer)
    row0 = (torch.softmax(torch.tensor([1.0, 2, 3, 4], dtype=torch.float64), 0)[3] + 0.25) / 2
    row1 = torch.softmax(torch.tensor([4.0, 0, 0, 0], dtype=torch.float64), 0)[0]
    assert prob.per_row(_logits()).tolist() == pytest.approx([float(row0), float(row1)], abs=1e-15)
    good = torch.tensor([[False, True, True], [True, False, False]])
    diff = TaskMetric(
        "prob_diff", positions[:, :1], scored[:, :1], candidates=torch.tensor([0, 2, 3]), good=good, bad=~good
    )
    p0 = torch.softmax(torch.tensor([1.0, 2, 3, 4], dtype=torch.float64), 0)
    p1 = torch.softmax(torch.tensor([4.0, 0, 0, 0], dtype=torch.float64), 0)
    assert diff.per_row(_logits()[:, :1]).tolist() == pytest.approx(
        [float(p0[2] + p0[3] - p0[0]), float(p1[0] - p1[2] - p1[3])], abs=1e-15
    )
    stacked = logit_diff.per_row(torch.cat([_logits(), _logits() * 2]))  # two copies of the prompts
    assert stacked.tolist() == [1.5, 4.0, 3.0, 8.0]


def test_geography_task(smollm2):
    task = geography_task(smollm2, n=12, seed=0)
    assert task.n == 12 and task.metric.kind == "logit_diff"
    assert task.clean_text[0].startswith("The capital of ") and task.clean_text[0].endswith(" is")
    tok = smollm2.tokenizer
    for i in range(task.n):
        length = len(tok(task.clean_text[i])["input_ids"])
        assert length == len(tok(task.corrupted_text[i])["input_ids"])
        assert int(task.metric.positions[i, 0]) == length - 1
        answer = int(task.metric.answer[i, 0])
        assert tok.decode([answer]) == task.answer_text[i]
        assert answer != int(task.metric.wrong[i, 0])
    assert "single-token capital" in task.notes[0]
    assert geography_task(smollm2, n=12, seed=0).clean_text == task.clean_text  # seeded


def test_calendar_and_greater_than_tasks(smollm2):
    calendar = calendar_task(smollm2, n=8, seed=1)
    tok = smollm2.tokenizer
    day = calendar.clean_text.index(next(t for t in calendar.clean_text if "day after" in t))
    name = calendar.clean_text[day].split()[-2]
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    assert tok.decode([int(calendar.metric.answer[day, 0])]) == " " + days[(days.index(name) + 1) % 7]
    greater = greater_than_task(smollm2, n=10, seed=0)
    assert greater.metric.kind == "prob_diff"
    assert torch.equal(greater.metric.good, ~greater.metric.bad)
    for text, good in zip(greater.clean_text, greater.metric.good, strict=True):
        start = text.split()[-5]  # "The war lasted from the year 1739 to the year 17"
        assert start.endswith("9") and text.endswith(" " + start[:2])
        assert good.tolist() == [d > int(start[2]) for d in range(10)]  # a later tens digit = a later year
    assert all(t.split()[-5].endswith("01") for t in greater.corrupted_text)


def test_induction_task_on_the_toy():
    toy = load_toy_induction()
    task = induction_task(toy, n=5, length=10, seed=3)
    clean, corrupted = task.clean_ids, task.corrupted_ids
    assert clean.shape == (5, 21) and (clean[:, 0] == 0).all()
    assert torch.equal(clean[:, 1:11], clean[:, 11:]) and torch.equal(corrupted[:, 11:], clean[:, 11:])
    for row in range(5):
        r, s = set(clean[row, 1:11].tolist()), set(corrupted[row, 1:11].tolist())
        w = set(task.metric.wrong[row].tolist())
        assert not (r & s) and not (r & w) and not (s & w)
    assert task.metric.positions[0].tolist() == list(range(11, 20))
    assert torch.equal(task.metric.answer, clean[:, 12:21])
    with pytest.raises(TaskError, match="needs a model with a tokenizer"):
        builtin_task(toy, "geography")


def _write(path, records) -> str:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return str(path)


def test_user_jsonl_tasks(smollm2, tmp_path):
    good = [
        {
            "clean": "The capital of France is",
            "corrupted": "The capital of Italy is",
            "answer": " Paris",
            "wrong": " Rome",
        },
        {
            "clean": "Q: the day after Monday is",
            "corrupted": "Q: the day after Friday is",
            "answer": " Tuesday",
            "wrong": " Saturday",
        },
    ]
    task = jsonl_task(smollm2, _write(tmp_path / "mine.jsonl", good))
    assert isinstance(task, Task) and task.name == "mine" and task.metric.kind == "logit_diff"
    assert task.attention_mask is not None  # two prompt lengths: right padding
    no_wrong = [{k: v for k, v in r.items() if k != "wrong"} for r in good]
    assert jsonl_task(smollm2, _write(tmp_path / "prob.jsonl", no_wrong)).metric.kind == "prob"

    def fails(records, match: str, **kwargs) -> None:
        with pytest.raises(TaskError, match=match) as info:
            jsonl_task(smollm2, _write(tmp_path / "bad.jsonl", records), **kwargs)
        assert "\n" not in str(info.value)

    fails([], "has no prompts")
    fails([{"clean": "a", "answer": " b"}], "missing or non-text field.*corrupted")
    fails([{**good[0], "answer": " New Delhi"}], "' New Delhi' is 2 tokens")
    mismatch = {**good[0], "corrupted": "The capital of the United Kingdom is"}
    fails([mismatch], "different|tokens, the corrupted")
    fails([good[0], no_wrong[1]], "wrong answer on every line or on none")
    kept = jsonl_task(smollm2, _write(tmp_path / "drop.jsonl", [mismatch, good[1]]), on_mismatch="drop")
    assert kept.n == 1 and "dropped 1 of 2" in kept.notes[0]
    with pytest.raises(TaskError, match="no such task file"):
        jsonl_task(smollm2, tmp_path / "missing.jsonl")
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        builtin_task(smollm2, "nope")
