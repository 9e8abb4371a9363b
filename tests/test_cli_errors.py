"""Requirement 6: bad input through the real CLI ends in ONE line on stderr starting with
'error:', a non-zero exit code, and never a traceback. Pickles need --allow-pickle.

The cases of the requirement run ``python -m spectrascope.cli weights PATH --out DIR --quiet
--workers 1`` in a subprocess (a module-scoped batch, as many at a time as there are cores);
further bad inputs go through the same entry point, ``spectrascope.cli.main``, in-process, since
each subprocess costs seconds of imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "layers.0.a.weight": torch.randn(64, 32, generator=g),
        "layers.1.b.weight": torch.randn(48, 32, generator=g),
    }


def _write_gguf(path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(32)
    writer.add_head_count(4)
    g = np.random.default_rng(0)
    writer.add_tensor("token_embd.weight", g.standard_normal((100, 32)).astype(np.float32))
    writer.add_tensor("blk.0.attn_v.weight", g.standard_normal((32, 32)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _make_inputs(root: Path) -> dict[str, tuple[Path, list[str]]]:
    """case name -> (model path, extra CLI args)."""
    root.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[Path, list[str]]] = {}

    cases["missing_path"] = (root / "does-not-exist.safetensors", [])

    rng = np.random.default_rng(1)
    junk = bytearray(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    junk[:4], junk[8] = b"\x00\x01\x02\x03", ord("x")  # neither GGUF magic nor a safetensors header
    (root / "random.dat").write_bytes(bytes(junk))
    cases["unknown_format"] = (root / "random.dat", [])

    (root / "empty.safetensors").write_bytes(b"")
    cases["empty_safetensors"] = (root / "empty.safetensors", [])

    good = root / "good.safetensors"
    save_file(_tensors(), str(good))
    data = good.read_bytes()
    (root / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    cases["truncated_safetensors"] = (root / "truncated.safetensors", [])

    header_len = int.from_bytes(data[:8], "little")
    corrupt = bytearray(data)
    corrupt[8 : 8 + header_len] = b"{" + b"\xff" * (header_len - 2) + b"}"  # same length, not JSON
    (root / "corrupt_header.safetensors").write_bytes(bytes(corrupt))
    cases["corrupt_header_safetensors"] = (root / "corrupt_header.safetensors", [])

    huge = bytearray(data)
    huge[:8] = (2**40).to_bytes(8, "little")  # header length beyond the file
    (root / "bad_header_length.safetensors").write_bytes(bytes(huge))
    cases["bad_header_length_safetensors"] = (root / "bad_header_length.safetensors", [])

    gg = root / "good.gguf"
    _write_gguf(gg)
    gdata = gg.read_bytes()
    (root / "truncated.gguf").write_bytes(gdata[: len(gdata) // 2])
    cases["truncated_gguf"] = (root / "truncated.gguf", [])
    (root / "truncated_header.gguf").write_bytes(gdata[:40])
    cases["truncated_header_gguf"] = (root / "truncated_header.gguf", [])
    (root / "bad_magic.gguf").write_bytes(b"GGUX" + gdata[4:])
    cases["bad_magic_gguf"] = (root / "bad_magic.gguf", [])

    (root / "empty_dir").mkdir()
    cases["dir_without_weights"] = (root / "empty_dir", [])

    bad_index = root / "bad_index"
    bad_index.mkdir()
    save_file(_tensors(), str(bad_index / "model-00001-of-00002.safetensors"))
    (bad_index / "model.safetensors.index.json").write_text(
        json.dumps(
            {
                "weight_map": {
                    "layers.0.a.weight": "model-00001-of-00002.safetensors",
                    "layers.1.b.weight": "model-00002-of-00002.safetensors",
                }
            }
        )
    )
    cases["index_with_missing_shard"] = (bad_index, [])

    bad_config = root / "bad_config"
    bad_config.mkdir()
    save_file(_tensors(), str(bad_config / "model.safetensors"))
    (bad_config / "config.json").write_text("{not json")
    cases["invalid_config_json"] = (bad_config, [])

    torch.save(_tensors(), root / "pytorch_model.bin")
    cases["pickle_refused"] = (root / "pytorch_model.bin", [])
    cases["pickle_allowed"] = (root / "pytorch_model.bin", ["--allow-pickle"])

    torch.save([torch.zeros(3)], root / "list.pt")
    cases["pickle_not_a_state_dict"] = (root / "list.pt", ["--allow-pickle"])

    return cases


SUBPROCESS_ERROR_CASES = [
    "missing_path",
    "unknown_format",
    "truncated_safetensors",
    "corrupt_header_safetensors",
    "truncated_gguf",
    "bad_magic_gguf",
    "pickle_refused",
]
SUBPROCESS_CASES = SUBPROCESS_ERROR_CASES + ["pickle_allowed"]
IN_PROCESS_ERROR_CASES = [
    "empty_safetensors",
    "bad_header_length_safetensors",
    "truncated_header_gguf",
    "dir_without_weights",
    "index_with_missing_shard",
    "invalid_config_json",
    "pickle_not_a_state_dict",
    # the subprocess cases once more, cheaply, so a regression shows which input broke
    *SUBPROCESS_ERROR_CASES,
]


def _weights_args(path: Path, out: Path, extra: list[str]) -> list[str]:
    return ["weights", str(path), "--out", str(out), "--quiet", "--workers", "1", *extra]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, tuple[Path, list[str]]]:
    return _make_inputs(tmp_path_factory.mktemp("cli_inputs"))


@pytest.fixture(scope="module")
def cli_results(inputs) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("SPECTRASCOPE_DEBUG", None)

    def run(name: str) -> tuple[subprocess.CompletedProcess, Path]:
        path, extra = inputs[name]
        out = path.parent / f"out_{name}"
        cmd = [sys.executable, "-m", "spectrascope.cli", *_weights_args(path, out, extra)]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, check=False), out

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        return dict(zip(SUBPROCESS_CASES, pool.map(run, SUBPROCESS_CASES)))


@pytest.mark.parametrize("case", SUBPROCESS_ERROR_CASES)
def test_bad_input_is_one_error_line(cli_results, case):
    proc, _out = cli_results[case]
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:"), proc.stderr
    assert "internal error" not in proc.stderr


@pytest.mark.parametrize("case", IN_PROCESS_ERROR_CASES)
def test_bad_input_is_one_error_line_in_process(inputs, case, monkeypatch, capsys, tmp_path):
    from spectrascope.cli import main

    path, extra = inputs[case]
    monkeypatch.delenv("SPECTRASCOPE_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["spectrascope", *_weights_args(path, tmp_path / "out", extra)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code not in (0, None)
    assert "Traceback" not in captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error:"), captured.err
    assert not (tmp_path / "out" / "weights.csv").exists()


def test_missing_path_message_names_the_path(cli_results):
    proc, _ = cli_results["missing_path"]
    assert "does-not-exist.safetensors" in proc.stderr and "no such file" in proc.stderr


def test_pickle_refusal_says_how_to_allow_it(cli_results):
    proc, out = cli_results["pickle_refused"]
    assert "--allow-pickle" in proc.stderr
    assert not (out / "weights.csv").exists()


def test_bad_magic_gguf_is_reported_as_such(cli_results):
    proc, _ = cli_results["bad_magic_gguf"]
    assert "magic" in proc.stderr


def test_pickle_allowed_is_analyzed(cli_results):
    proc, out = cli_results["pickle_allowed"]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for name in ["weights.parquet", "weights.csv", "summary.json"]:
        assert (out / name).exists(), name
    df = pd.read_csv(out / "weights.csv")
    assert sorted(df["name"]) == ["layers.0.a.weight", "layers.1.b.weight"]
    assert (df["status"] == "success").all()


def test_console_script_reports_errors_the_same_way(tmp_path):
    script = Path(sys.executable).parent / "spectrascope"
    if not script.exists():
        pytest.fail(f"console script not installed at {script}")
    proc = subprocess.run(
        [str(script), "weights", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr


@pytest.mark.parametrize("argv", [["study", "--no-such-option"], ["weights", "--workers", "many"]])
def test_usage_errors_are_one_line_naming_the_help(argv, monkeypatch, capsys):
    from spectrascope.cli import main

    monkeypatch.delenv("SPECTRASCOPE_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["spectrascope", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "internal error" not in err and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"{argv[0]} --help" in lines[0], err
