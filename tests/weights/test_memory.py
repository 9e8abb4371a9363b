"""Bounded memory: analyzing a sharded checkpoint whose total size is many times one tensor
holds about one tensor's working set per worker plus a constant, measured in a subprocess
(tracemalloc of numpy allocations in process; peak RSS of the process tree with 2 workers)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
N_TENSORS, ROWS, COLS = 40, 8192, 256
TENSOR_F32 = ROWS * COLS * 4  # 8 MiB; the checkpoint holds 40 of them (320 MiB as float32)
MiB = 2**20


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _write(make, folder: Path, n: int, rows: int = ROWS, cols: int = COLS) -> Path:
    """n tensors of rows x cols in bf16, four shards, an index, a config (``make``: the
    synthetic-checkpoint script)."""
    folder.mkdir(parents=True)
    names = [(f"model.layers.{i}.mlp.down_proj.weight", (cols, rows) if i % 2 else (rows, cols)) for i in range(n)]
    shards = [names[i::4] for i in range(4)] if n >= 4 else [names]
    weight_map = {}
    for j, tensors in enumerate(shards):
        fname = f"model-{j + 1:05d}-of-{len(shards):05d}.safetensors"
        make.write_shard(folder / fname, tensors, seed=j, dtype="bf16")
        weight_map.update({name: fname for name, _ in tensors})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": n}))
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, synthetic_checkpoints):
    root = tmp_path_factory.mktemp("mem")
    # the baseline: the same run (driver + 2 pool workers) on two negligible tensors
    return (
        _write(synthetic_checkpoints, root / "big", N_TENSORS),
        _write(synthetic_checkpoints, root / "small", 2, 64, 32),
    )


TRACE = """
import sys, tracemalloc
from spectrascope.weights.options import WeightsOptions
from spectrascope.weights.runner import run_weights
tracemalloc.start()
df, _ = run_weights(sys.argv[1], WeightsOptions(precision="fast"), workers=1)
assert (df["status"] == "success").all() and len(df) == int(sys.argv[2]), df
print(tracemalloc.get_traced_memory()[1])
"""


def test_in_process_peak_is_one_tensor_not_the_checkpoint(checkpoints):
    big, _ = checkpoints
    proc = subprocess.run(
        [sys.executable, "-c", TRACE, str(big), str(N_TENSORS)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    peak = int(proc.stdout.split()[-1])
    # the float32 tensor, one bf16 read chunk, the Gram matrix and fit temporaries (about
    # 12.5 MiB measured); not 40 tensors
    assert peak <= 2 * TENSOR_F32 + 4 * MiB, peak / MiB
    assert peak < N_TENSORS * TENSOR_F32 / 10


RUN = """
import sys
from spectrascope.weights.options import WeightsOptions
from spectrascope.weights.runner import run_weights
df, _ = run_weights(sys.argv[1], WeightsOptions(precision="fast"), workers=int(sys.argv[2]))
assert (df["status"] == "success").all()
"""


def test_two_workers_peak_rss_is_workers_times_a_tensor_plus_a_constant(checkpoints):
    measure = _load(ROOT / "benchmarks" / "measure.py", "measure")
    big, small = checkpoints
    workers = 2
    base = measure.run_measured([sys.executable, "-c", RUN, str(small), str(workers)], interval=0.01)
    run = measure.run_measured([sys.executable, "-c", RUN, str(big), str(workers)], interval=0.01)
    assert base.returncode == 0 and run.returncode == 0, run.stdout
    extra = (run.peak_rss_mb - base.peak_rss_mb) * MiB
    # (workers x one tensor's working set) + a constant; holding the checkpoint would be 320 MiB
    assert extra <= workers * 2 * TENSOR_F32 + 48 * MiB, (run.peak_rss_mb, base.peak_rss_mb)
