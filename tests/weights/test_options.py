"""Options are checked before any work: each bad value is one OptionError naming the option (the
CLI's flag at the CLI, the parameter in the API); choices are Enums with the CLI's strings."""

from __future__ import annotations

import sys

import pytest

from spectrascope.errors import OptionError
from spectrascope.weights import options as options_module
from spectrascope.weights.options import Backend, Device, Precision, Spectrum, WeightsOptions
from spectrascope.weights.runner import run_weights


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"min_evals": 0}, "min_evals must be at least 1 (got 0)"),
        ({"max_N": -1}, "max_N must be at least 1 (got -1)"),
        ({"partial_min_m": 0}, "partial_min_m must be at least 1 (got 0)"),
        ({"seed": -3}, "seed must be at least 0 (got -3)"),
        ({"min_evals": 20, "max_evals": 10}, "max_evals (10) is below min_evals (20)"),
        ({"precision": "double"}, "precision must be one of exact, fast (got 'double')"),
        ({"device": "tpu"}, "device must be one of cpu, cuda, auto (got 'tpu')"),
        ({"spectrum": "half"}, "spectrum must be one of full, partial, auto (got 'half')"),
    ],
)
def test_bad_option_values_are_refused_when_built(kwargs, message):
    with pytest.raises(OptionError) as err:
        WeightsOptions(**kwargs)
    assert str(err.value).startswith(message)


def test_choices_are_enums_equal_to_their_strings():
    options = WeightsOptions(precision="fast", device="auto", spectrum="full")
    assert options.precision is Precision.FAST and options.device is Device.AUTO and options.spectrum is Spectrum.FULL
    assert options.to_dict()["precision"] == "fast" and type(options.to_dict()["precision"]) is str


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"workers": 0}, "workers must be at least 1 (got 0)"),
        ({"workers": -2}, "workers must be at least 1 (got -2)"),
        ({"memory_budget": 0}, "memory_budget must be at least 1 (got 0)"),
        ({"backend": "spark"}, "backend must be one of local, ray (got 'spark')"),
    ],
)
def test_bad_run_values_are_refused_before_the_model_is_opened(kwargs, message, monkeypatch):
    opened = []
    monkeypatch.setattr("spectrascope.weights.runner.open_source", lambda *a, **k: opened.append(a))
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_weights("no-such-model", **kwargs)
    assert opened == []


def test_cuda_without_a_gpu_is_one_option_error(monkeypatch):
    monkeypatch.setattr(options_module, "cuda_available", lambda: False)
    monkeypatch.setattr("spectrascope.weights.backends.cuda_available", lambda: False)
    with pytest.raises(OptionError, match="device cuda: no CUDA device is available here"):
        run_weights("no-such-model", WeightsOptions(device="cuda"))
    assert Backend("ray") is Backend.RAY


@pytest.mark.parametrize(
    "args,line",
    [
        (["--workers", "0"], "error: --workers must be at least 1 (got 0)"),
        (["--workers", "-1"], "error: --workers must be at least 1 (got -1)"),
        (["--max-memory", "0"], "error: --max-memory must be above 0 GiB (got 0.0)"),
        (["--min-evals", "0"], "error: --min-evals must be at least 1 (got 0)"),
        (["--max-n", "0"], "error: --max-n must be at least 1 (got 0)"),
        (["--seed", "-1"], "error: --seed must be at least 0 (got -1)"),
        (["--device", "cuda"], "error: --device cuda: no CUDA device is available here (use cpu or auto)"),
    ],
)
def test_cli_refuses_bad_values_in_one_line_naming_the_flag(args, line, tmp_path, monkeypatch, capsys):
    from spectrascope.cli import main

    monkeypatch.setattr("spectrascope.weights.backends.cuda_available", lambda: False)
    monkeypatch.delenv("SPECTRASCOPE_DEBUG", raising=False)
    monkeypatch.setattr(
        sys, "argv", ["spectrascope", "weights", "toy-induction", "--out", str(tmp_path / "out"), "--quiet", *args]
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert err == line
    assert not (tmp_path / "out" / "weights.rows.jsonl").exists()


def test_cli_refuses_an_unknown_choice_as_a_usage_error(monkeypatch, capsys):
    from spectrascope.cli import main

    monkeypatch.setattr(sys, "argv", ["spectrascope", "weights", "toy-induction", "--backend", "spark"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "spark" in capsys.readouterr().err
