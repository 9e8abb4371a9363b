"""Errors by cause, one line each, naming only the options of the command that was run: the API
spells an option as its parameter, the CLI as the command's flag, and a hint about an option
the command does not have is left out."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from spectrascope import errors
from spectrascope.errors import (
    InputError,
    OptionError,
    SourceError,
    SpectrascopeError,
)


def _cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    from spectrascope.cli import main

    monkeypatch.delenv("SPECTRASCOPE_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["spectrascope", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err.strip()


def test_every_cause_is_a_spectrascope_error():
    causes = [
        errors.InputError,
        errors.SourceError,
        errors.ModelNotInstalledError,
        errors.ArchitectureError,
        errors.OptionError,
        errors.SiteError,
        errors.ResumeError,
        errors.OutputError,
        errors.NumericalError,
        errors.CorpusError,
    ]
    assert all(issubclass(c, SpectrascopeError) for c in causes)
    assert issubclass(SourceError, InputError) and issubclass(errors.SiteError, OptionError)


def test_render_spells_the_option_and_drops_hints_the_front_end_lacks():
    err = SourceError("m.bin: refusing to unpickle", option="allow_pickle=True", hint="or pass {option} to load it")
    assert str(err) == "m.bin: refusing to unpickle; or pass allow_pickle=True to load it"
    assert (
        err.render({"allow_pickle": "--allow-pickle"}.get)
        == "m.bin: refusing to unpickle; or pass --allow-pickle to load it"
    )
    assert err.render(lambda name: None) == "m.bin: refusing to unpickle"
    bad = OptionError("{option} must be at least 1 (got 0)", option="workers")
    assert bad.render({"workers": "--workers"}.get) == "--workers must be at least 1 (got 0)"
    assert bad.render(lambda name: None) == "workers must be at least 1 (got 0)"
    braces = OptionError('expected an object like {"text": "..."}')
    assert str(braces) == 'expected an object like {"text": "..."}'


@pytest.fixture(scope="module")
def pickles(tmp_path_factory):
    root = tmp_path_factory.mktemp("pickles")
    g = torch.Generator().manual_seed(0)
    torch.save({"layers.0.a.weight": torch.randn(32, 16, generator=g)}, root / "model.bin")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"w": Evil()}, root / "evil.pt")
    return root


def test_weights_pickle_refusal_names_its_flag(pickles, tmp_path, monkeypatch, capsys):
    code, err = _cli(
        ["weights", str(pickles / "model.bin"), "--out", str(tmp_path / "o"), "--quiet"], monkeypatch, capsys
    )
    assert code == 2 and len(err.splitlines()) == 1
    assert "pass --allow-pickle to load it" in err and "allow_pickle" not in err


def test_study_pickle_refusal_names_no_option_it_does_not_have(pickles, tmp_path, monkeypatch, capsys):
    code, err = _cli(
        ["study", str(pickles / "model.bin"), "--out", str(tmp_path / "s"), "--stages", "weights"], monkeypatch, capsys
    )
    last = err.splitlines()[-1]
    assert code == 2 and last.startswith("error:") and "refusing to unpickle" in last
    assert "allow-pickle" not in err and "allow_pickle" not in err


def test_malicious_pickle_under_allow_pickle_is_one_line(pickles, tmp_path, monkeypatch, capsys):
    code, err = _cli(
        ["weights", str(pickles / "evil.pt"), "--allow-pickle", "--out", str(tmp_path / "o"), "--quiet"],
        monkeypatch,
        capsys,
    )
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "unsupported GLOBAL posix.system" in err or "unsupported global" in err.lower()
    assert "Re-running" not in err and "weights_only=False" not in err and "likely succeed" not in err


def test_corpus_field_hint_names_no_api_parameter_at_the_cli(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "notes.jsonl"
    corpus.write_text("".join(json.dumps({"body": f"note {i}"}) + "\n" for i in range(3)))
    code, err = _cli(
        ["activations", "toy-induction", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--quiet"],
        monkeypatch,
        capsys,
    )
    last = err.splitlines()[-1]
    assert code == 2 and "has no field 'text'" in last and "text_field" not in err


def test_api_corpus_hint_names_the_parameter(tmp_path):
    from spectrascope.corpora import load_corpus

    corpus = tmp_path / "notes.jsonl"
    corpus.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(errors.CorpusError, match="name the text field with text_field="):
        load_corpus(corpus)


@pytest.mark.parametrize(
    "args,line",
    [
        (
            ["--activation-tokens", "0"],
            (
                "error: Invalid value for '--activation-tokens': Input should be greater than or "
                "equal to 1 (see 'spectrascope study --help')"
            ),
        ),
        (
            ["--loss-tokens", "-2"],
            (
                "error: Invalid value for '--loss-tokens': Input should be greater than or equal to 2 "
                "(see 'spectrascope study --help')"
            ),
        ),
        (
            ["--ablation-mode", "median"],
            (
                "error: Invalid value for '--ablation-mode': 'median' is not one of 'mean', "
                "'zero'. (see 'spectrascope study --help')"
            ),
        ),
        (
            ["--budget", "huge"],
            (
                "error: Invalid value for '--budget': 'huge' is not one of 'small', 'default', 'large'. "
                "(see 'spectrascope study --help')"
            ),
        ),
        (["--corpus", " "], "error: budget --corpus is empty: give at least one domain"),
    ],
)
def test_study_budget_errors_name_the_study_flags(args, line, tmp_path, monkeypatch, capsys):
    code, err = _cli(["study", "toy-induction", "--out", str(tmp_path / "s"), *args], monkeypatch, capsys)
    assert code == 2 and err == line
    assert not (tmp_path / "s").exists()  # refused before any work


@pytest.mark.parametrize(
    "args,line",
    [
        (
            ["--seq-len", "0"],
            (
                "error: Invalid value for '--seq-len': Input should be greater than or equal to 2 "
                "(see 'spectrascope activations --help')"
            ),
        ),
        (
            ["--max-tokens", "0"],
            (
                "error: Invalid value for '--max-tokens': Input should be greater than or equal to 1 "
                "(see 'spectrascope activations --help')"
            ),
        ),
    ],
)
def test_activation_budgets_are_checked_before_the_model_is_loaded(args, line, tmp_path, monkeypatch, capsys):
    loaded = []
    monkeypatch.setattr("spectrascope.activations.run.as_model", lambda model: loaded.append(model))
    code, err = _cli(
        ["activations", "toy-induction", "--out", str(tmp_path / "o"), "--quiet", *args], monkeypatch, capsys
    )
    assert code == 2 and err == line and loaded == []
