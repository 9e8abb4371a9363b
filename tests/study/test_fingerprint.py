"""A stage's fingerprint as done.json records it compares equal to a fresh one, and names the
device and the corpora's texts."""

import json
import shutil

import pytest

from spectrascope.corpora import stdlib_code
from spectrascope.study import StudyBudget
from spectrascope.study.fingerprint import differences, stage_fingerprint, study_identity


@pytest.mark.parametrize("preset", ["small", "default", "large"])
def test_a_recorded_fingerprint_equals_a_fresh_one(preset):
    # nested tuples (the circuit tasks) came back from JSON as lists: every default-budget resume was refused
    fresh = stage_fingerprint("bridge", study_identity("smollm2-135m", 0, StudyBudget.preset(preset)))
    assert differences(json.loads(json.dumps(fresh)), fresh) == []


def test_the_device_is_part_of_the_fingerprint():
    budget = StudyBudget.small().with_overrides(corpora="calendar")
    cpu = stage_fingerprint("activations", study_identity("smollm2-135m", 0, budget, "cpu"))
    cuda = stage_fingerprint("activations", study_identity("smollm2-135m", 0, budget, "cuda"))
    assert differences(cpu, cuda) == ["device"]


def test_the_attention_implementation_is_part_of_the_fingerprint(monkeypatch):
    """sdpa and eager round differently: a run under the other implementation is not this one's."""
    from spectrascope.study import context

    ours = study_identity("smollm2-135m", 0, StudyBudget.small())
    monkeypatch.setattr(context, "STUDY_ATTENTION", "eager")
    other = study_identity("smollm2-135m", 0, StudyBudget.small())
    assert differences(ours, other) == ["attention"]


def test_the_corpora_are_identified_by_their_texts_not_their_names(tmp_path, monkeypatch):
    """The code corpus follows the interpreter's standard library: other files, other identity."""
    budget = StudyBudget.small().with_overrides(corpora="code,calendar")
    before = study_identity("smollm2-135m", 0, budget)
    for name in stdlib_code.MODULES:
        shutil.copy(stdlib_code.stdlib_dir() / f"{name}.py", tmp_path / f"{name}.py")
    with open(tmp_path / "bisect.py", "a") as f:
        f.write("\n\ndef added_in_another_python_version():\n    return 1\n")
    monkeypatch.setattr(stdlib_code, "stdlib_dir", lambda: tmp_path)
    after = study_identity("smollm2-135m", 0, budget)
    assert set(before["corpora"]) == {"code", "calendar"}
    assert differences(before, after) == ["corpora code"]
