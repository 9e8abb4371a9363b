"""Bad architecture input through the CLI entry point: a config naming an unknown family, a
checkpoint whose tensor names are not its config's family, attention asked of a model without
it. One line starting with 'error:', a non-zero exit, no traceback, nothing written. The toy
model is a MODEL name like any other."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
import transformers
from family_models import mamba, model
from safetensors.torch import save_file

from spectrascope.cli import main


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("arch_cli")
    out = {}
    gpt2 = {k: v.detach().clone().contiguous() for k, v in model("gpt2").state_dict().items() if "attn.bias" not in k}
    mismatch = root / "llama_config_gpt2_names"
    mismatch.mkdir()
    save_file(gpt2, str(mismatch / "model.safetensors"))
    (mismatch / "config.json").write_text(
        json.dumps({"model_type": "llama", "num_attention_heads": 4, "hidden_size": 32, "num_hidden_layers": 2})
    )
    out["mismatch"] = mismatch
    unknown = root / "unknown_family"
    unknown.mkdir()
    save_file(
        {"layers.0.mix.weight": torch.randn(32, 16), "layers.1.mix.weight": torch.randn(32, 16)},
        str(unknown / "model.safetensors"),
    )
    (unknown / "config.json").write_text(
        json.dumps({"model_type": "mystery", "num_attention_heads": 4, "hidden_size": 16})
    )
    out["unknown"] = unknown
    mamba().save_pretrained(root / "mamba")
    out["mamba"] = root / "mamba"
    torch.manual_seed(0)
    opt = transformers.OPTForCausalLM(
        transformers.OPTConfig(
            vocab_size=64,
            hidden_size=16,
            num_hidden_layers=1,
            ffn_dim=32,
            num_attention_heads=2,
            max_position_embeddings=64,
            word_embed_proj_dim=16,
        )
    )
    opt.save_pretrained(root / "opt")
    out["opt"] = root / "opt"
    return out


def _run(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.delenv("SPECTRASCOPE_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["spectrascope", *argv])
    try:
        main()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "case, verb, extra, message",
    [
        ("mismatch", "weights", [], "tensor names do not match the config's family \\(llama\\)"),
        (
            "unknown",
            "weights",
            ["--heads"],
            "per-head spectra: model type 'mystery' is not supported; supported model types: bert",
        ),
        ("mamba", "weights", ["--heads"], "mamba is a state-space model without attention"),
        ("mamba", "heads", [], "head scores needs attention: mamba is a state-space model without attention"),
        ("opt", "heads", [], "model type 'opt' is not supported"),
        ("opt", "ablate", [], "model type 'opt' is not supported"),
    ],
)
def test_architecture_errors_are_one_line(dirs, tmp_path, monkeypatch, capsys, case, verb, extra, message):
    out = tmp_path / "out"
    code, stdout, stderr = _run([verb, str(dirs[case]), "--out", str(out), *extra], monkeypatch, capsys)
    assert code not in (0, None)
    assert "Traceback" not in stdout + stderr and "internal error" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists() or not any(out.glob("*.csv"))


def test_the_toy_model_is_a_model_name(tmp_path, monkeypatch, capsys):
    code, _, stderr = _run(
        ["weights", "toy-induction", "--out", str(tmp_path / "w"), "--quiet", "--workers", "1"], monkeypatch, capsys
    )
    assert code == 0, stderr
    assert (tmp_path / "w" / "weights.csv").exists()
    code, _, stderr = _run(
        ["heads", "toy-induction", "--n-seq", "2", "--out", str(tmp_path / "h")], monkeypatch, capsys
    )
    assert code == 0, stderr
    assert (tmp_path / "h" / "head_scores.csv").exists()


@pytest.mark.parametrize(
    "verb",
    [
        ["ablate", "--heads", "0.0"],
        ["steer", "--positive", "a", "--negative", "b", "--layer", "0", "--prompt", "c"],
        ["patch", "--clean", "a b", "--corrupted", "a c", "--correct", "b", "--wrong", "c"],
    ],
)
def test_the_bundled_encoder_is_refused_up_front_by_verbs_that_need_next_token_logits(run_cli, verb):
    """minilm-l6 (BERT without an LM head): one line before any work, not an index error or a
    missing 'logits' attribute."""
    code, _, err = run_cli(verb[0], "minilm-l6", *verb[1:])
    assert code == 2 and err.startswith("error:") and "needs a causal language model" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
