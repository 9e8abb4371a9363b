"""The Ray backend (ray_backend.py) on a local Ray instance with 2 CPUs: the same rows as the
local engine, row for row; a worker that dies is retried and its tensor is not lost; without
Ray, one clear error line."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from spectrascope.errors import SpectrascopeError
from spectrascope.weights.backends.ray_cluster import CRASH_ENV
from spectrascope.weights.options import WeightsOptions
from spectrascope.weights.runner import MATRIX_LOG, run_weights

CRASH_KEY = "model.layers.1.mlp.up_proj.weight"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, synthetic_checkpoints):
    return synthetic_checkpoints.make_checkpoint(
        tmp_path_factory.mktemp("ray") / "ckpt", seed=2, scale=1 / 32, layers=2, shard_mb=0.5
    )


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """One local Ray instance with 2 CPUs for the module. Its workers see the crash hook:
    the task CRASH_KEY kills its worker when the flag file does not exist."""
    import ray  # a test extra

    flag = tmp_path_factory.mktemp("flag") / "crashed"
    flag.write_text("disarmed")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {CRASH_ENV: f"{CRASH_KEY}@{flag}"}},
    )
    yield flag
    ray.shutdown()


@pytest.fixture(scope="module")
def local_rows(checkpoint):
    rows, _ = run_weights(checkpoint, WeightsOptions(mp_fit=True), workers=1)
    return rows


def test_ray_matches_local_engine_row_for_row(checkpoint, ray_cluster, local_rows, tmp_path):
    out = tmp_path / "out"
    rows, _ = run_weights(checkpoint, WeightsOptions(mp_fit=True), out_dir=out, workers=2, backend="ray")
    pd.testing.assert_frame_equal(rows, local_rows)  # same rows, same order, bit for bit
    logged = [json.loads(line)["key"] for line in (out / MATRIX_LOG).read_text().splitlines()]
    analyzed = local_rows.loc[local_rows["status"] != "skipped", "name"]
    assert sorted(logged) == sorted(analyzed)  # the driver wrote every row as it arrived


def test_killed_worker_is_retried_and_its_tensor_not_lost(checkpoint, ray_cluster, local_rows):
    flag = ray_cluster
    flag.unlink()  # arm: the worker that gets CRASH_KEY dies once (os._exit)
    rows, _ = run_weights(checkpoint, WeightsOptions(mp_fit=True), workers=2, backend="ray")
    assert flag.exists()  # the crash happened
    assert rows.set_index("name").loc[CRASH_KEY, "status"] == "success"
    pd.testing.assert_frame_equal(rows, local_rows)


def test_without_ray_one_clear_line(checkpoint):
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from spectrascope.cli import main\n"
        f"sys.argv = ['spectrascope', 'weights', {str(checkpoint)!r}, '--out', {str(checkpoint / 'o')!r}, "
        "'--backend', 'ray', '--quiet']\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'spectrascope[ray]'" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_in_memory_source_is_refused_by_ray():
    import torch

    with pytest.raises(SpectrascopeError, match="model on disk"):
        run_weights({"w": torch.randn(20, 10)}, WeightsOptions(), workers=2, backend="ray")
