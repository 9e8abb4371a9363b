"""``spectrascope sae train | eval | features`` through the real entry point, and bad input:
one line on stderr, exit code 2, nothing half-written."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from spectrascope.sae.saelens_io import load_sae

SITE = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny.hf.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


def _train_args(model, out, corpus, arch, d_sae, k, tokens, batch_size, *extra):
    """argv of ``spectrascope sae train`` on ``SITE`` (quiet)."""
    return [
        "sae", "train", model, "--site", SITE, "--corpus", corpus, "--arch", arch,
        "--d-sae", str(d_sae), "--k", str(k), "--tokens", str(tokens), "--batch-size", str(batch_size),
        "--out", out, "--quiet", *extra,
    ]  # fmt: skip


def test_train_eval_features(tiny_dir, tmp_path, run_cli):
    out = tmp_path / "sae"
    code, stdout, err = run_cli(*_train_args(tiny_dir, out, "calendar,arithmetic", "batch_topk", 64, 4, 4096, 256))
    assert code == 0, err
    assert "trained batch_topk SAE" in stdout
    sae = load_sae(out)
    assert sae.metadata["hook_name"] == SITE and sae.d_sae == 64
    assert len(pd.read_parquet(out / "training_log.parquet")) > 0
    assert json.loads((tmp_path / "sae-activations" / "meta.json").read_text())["complete"]
    code, stdout, err = run_cli(
        "sae",
        "eval",
        tiny_dir,
        "--sae",
        out,
        "--corpus",
        "calendar,arithmetic",
        "--tokens",
        "128",
        "--out",
        tmp_path / "eval",
        "--quiet",
    )
    assert code == 0, err
    quality = pd.read_parquet(tmp_path / "eval" / "sae_quality.parquet")
    assert quality["domain"].tolist() == ["calendar", "arithmetic", "all"]
    code, stdout, err = run_cli(
        "sae",
        "features",
        tiny_dir,
        "--sae",
        out,
        "--corpus",
        "calendar,arithmetic",
        "--tokens",
        "128",
        "--out",
        tmp_path / "feat",
        "--quiet",
    )
    assert code == 0, err
    assert (tmp_path / "feat" / "feature_ranking.parquet").exists()


def _one_error_line(code: int, err: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--site", "blocks.7.hook_resid_post"], "layer 7 does not exist"),
        (["--site", "blocks.1.hook_sideways"], "unknown site"),
        (["--d-sae", "0"], "d_sae must be a positive integer"),
        (["--d-sae", "16", "--k", "17"], "k must be between 1 and d_sae"),
        (["--arch", "gated"], "unknown SAE architecture"),
        (["--corpus", "EMPTY"], "empty"),
        (["--store-dtype", "int8"], "dtype"),
    ],
)
def test_train_bad_input(tiny_dir, tmp_path, run_cli, extra, message):
    (tmp_path / "empty.txt").write_text("\n  \n")
    extra = [str(tmp_path / "empty.txt") if e == "EMPTY" else e for e in extra]
    args = _train_args(tiny_dir, tmp_path / "sae", "calendar", "topk", 16, 2, 512, 128, *extra)
    code, _, err = run_cli(*args)
    _one_error_line(code, err)
    assert message in err
    assert not (tmp_path / "sae").exists() and not (tmp_path / "sae-activations").exists()


def test_eval_bad_sae_folders(tiny_dir, tmp_path, run_cli):
    from spectrascope.sae.registry import build_sae
    from spectrascope.sae.saelens_io import save_sae

    code, _, err = run_cli("sae", "eval", tiny_dir, "--sae", tmp_path / "nowhere", "--quiet")
    _one_error_line(code, err)
    corrupt = tmp_path / "corrupt"
    save_sae(build_sae("topk", 32, 8, k=2), corrupt)
    (corrupt / "sae_weights.safetensors").write_bytes(b"not a safetensors file")
    code, _, err = run_cli("sae", "eval", tiny_dir, "--sae", corrupt, "--site", SITE, "--quiet")
    _one_error_line(code, err)
    assert "corrupt weights file" in err
    wide = tmp_path / "wide"
    save_sae(build_sae("topk", 48, 8, k=2), wide)
    code, _, err = run_cli(
        "sae", "features", tiny_dir, "--sae", wide, "--site", SITE, "--out", tmp_path / "f", "--quiet"
    )
    _one_error_line(code, err)
    assert "d_in = 48" in err and "width 32" in err
    assert not (tmp_path / "f").exists()


def test_train_reports_the_matched_target_l0(tiny_dir, tmp_path, run_cli):
    code, stdout, err = run_cli(*_train_args(tiny_dir, tmp_path / "sae", "calendar", "jumprelu", 64, 4, 2048, 256))
    assert code == 0, err
    assert "firing cutoffs matched to the target L0" in stdout and "-> 4.0" in stdout
    match = load_sae(tmp_path / "sae").metadata["spectrascope"]["training"]["l0_match"]
    assert match["l0_after"] == pytest.approx(4.0, rel=0.02)
