"""The CUDA code path (gpu.py: stacked Gram products and batched torch eigvalsh) run on the
CPU gives the numbers of the numpy path; device resolution without a GPU."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spectrascope.models.open_source import open_source
from spectrascope.spectra.esd import gram_eigenvalues
from spectrascope.weights.backends.gpu import execute_batched
from spectrascope.weights.options import WeightsOptions, cuda_available
from spectrascope.weights.plan import plan_tasks
from spectrascope.weights.rows import matrix_table
from spectrascope.weights.runner import run_weights
from spectrascope.weights.torch_kernels import batched_gram_eigenvalues


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, synthetic_checkpoints):
    """A small sharded bf16 Llama checkpoint (d_model 64, MLP 172, vocab 1000, 2 layers)."""
    return synthetic_checkpoints.make_checkpoint(
        tmp_path_factory.mktemp("gpu") / "ckpt", seed=1, scale=1 / 64, layers=2, shard_mb=0.2
    )


@pytest.mark.parametrize("precision,rtol", [("exact", 1e-10), ("fast", 2e-4)])
def test_batched_torch_eigenvalues_equal_numpy(precision, rtol):
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((90, 40)) * (i + 1) for i in range(3)] + [rng.standard_normal((40, 90))]
    batched = batched_gram_eigenvalues(mats, precision, device="cpu")
    for W, ev in zip(mats, batched):
        ref = gram_eigenvalues(W, precision)
        np.testing.assert_allclose(ev, ref, rtol=rtol, atol=rtol * ref.max())


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_batched_engine_path_on_cpu_matches_numpy_rows(checkpoint, precision):
    options = WeightsOptions(precision=precision, spectrum="full")
    numpy_rows, _ = run_weights(checkpoint, options, workers=1)
    source = open_source(checkpoint)
    plan = plan_tasks(source, options)
    rows = []
    # a tiny batch budget forces several batches per shape
    execute_batched(
        source, plan.matrix_tasks, options, lambda task, r: rows.extend(r), torch_device="cpu", batch_bytes=200_000
    )
    torch_rows = matrix_table(rows + plan.skipped_rows)
    assert list(torch_rows["name"]) == list(numpy_rows["name"])
    assert set(torch_rows["status"]) <= {"success", "skipped"}  # the norm vectors are skipped
    assert (torch_rows["status"] == "success").sum() == len(plan.matrix_tasks)
    pd.testing.assert_series_equal(torch_rows["num_pl_spikes"], numpy_rows["num_pl_spikes"])
    tol = 1e-9 if precision == "exact" else 1e-3
    for col in ["alpha", "xmin", "D", "lambda_max", "log_norm", "stable_rank", "alpha_weighted", "erg_num"]:
        np.testing.assert_allclose(torch_rows[col], numpy_rows[col], rtol=tol, err_msg=col)
    assert set(torch_rows.columns) == set(numpy_rows.columns)


def test_auto_device_follows_gpu_presence(monkeypatch):
    from spectrascope.weights import options

    assert WeightsOptions(device="auto").resolved_device() == ("cuda" if cuda_available() else "cpu")
    for present, expected in [(False, "cpu"), (True, "cuda")]:
        monkeypatch.setattr(options, "cuda_available", lambda present=present: present)
        assert WeightsOptions(device="auto").resolved_device() == expected
        assert WeightsOptions(device="cpu").resolved_device() == "cpu"
