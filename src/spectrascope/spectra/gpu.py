"""Full spectra with torch, batched across matrices of the same shape (CUDA, or CPU in tests).

On a GPU the per-matrix cost of ``A^T A`` and ``eigvalsh`` is dominated by kernel launches
and host-device copies for matrices of LLM size; stacking the matrices of one shape (all q
projections, all MLP up projections, ...) into one batch makes one ``bmm`` and one batched
``torch.linalg.eigvalsh`` call per batch. The power-law fit and the other metrics then run on
the CPU from the returned eigenvalues (the same code as the numpy path), so the torch path
and the numpy path differ only by floating-point rounding in the eigenvalues.

Memory: a batch holds at most ``batch_bytes`` of float32 tensors on the host and their
working copies on the device; matrices that take a partial spectrum (partial.py) and head
tasks run one at a time through the ordinary path.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby

import numpy as np

from ..errors import SourceError
from .esd import Precision, oriented
from .matrix_analysis import analyze_matrix, uses_partial
from .options import WeightsOptions

DEFAULT_BATCH_BYTES = 2 * 2**30


def batched_gram_eigenvalues(mats: list[np.ndarray], precision: Precision = "fast", device: str = "cuda") -> list[np.ndarray]:
    """Eigenvalues of A^T A (A = W long side first) for matrices of one oriented shape.

    Args:
        mats: matrices whose oriented shapes are all equal.
        precision: "exact" (float64) or "fast" (float32).
        device: torch device ("cuda", "cuda:1", "cpu").
    Returns:
        one float64 numpy array per matrix, ascending, clipped at 0.
    """
    import torch

    dtype = torch.float64 if precision == "exact" else torch.float32
    A = torch.stack([torch.from_numpy(np.ascontiguousarray(oriented(np.asarray(W)))) for W in mats])
    A = A.to(device=device, dtype=dtype)
    G = A.transpose(1, 2) @ A
    del A
    evals = torch.linalg.eigvalsh(G)
    out = evals.to("cpu", torch.float64).numpy()
    return [np.clip(e, 0.0, None) for e in out]


def _oriented_shape(task) -> tuple[int, int]:
    return (max(task.shape), min(task.shape))


def execute_batched(source, tasks: list, options: WeightsOptions, on_result: Callable, torch_device: str = "cuda",
                    batch_bytes: int = DEFAULT_BATCH_BYTES) -> None:
    """Run tasks in process: full-spectrum matrix tasks batched by shape on ``torch_device``,
    everything else (heads, partial spectra, unreadable tensors) one task at a time."""
    from threadpoolctl import threadpool_limits

    from .engine import load_matrix, run_task

    def batchable(t) -> bool:
        return t.kind == "matrix" and len(t.shape) == 2 and not uses_partial(t.shape, options)

    singles = [t for t in tasks if not batchable(t)]
    matrix_tasks = sorted((t for t in tasks if batchable(t)), key=_oriented_shape)
    device = "cuda" if torch_device.startswith("cuda") else "cpu"
    with threadpool_limits(1):
        for shape, group in groupby(matrix_tasks, key=_oriented_shape):
            group = list(group)
            per = 4 * shape[0] * shape[1]
            size = max(1, batch_bytes // max(per, 1))
            for start in range(0, len(group), size):
                _run_batch(source, group[start : start + size], options, on_result, torch_device, device, load_matrix, run_task)
        for task in singles:
            on_result(task, run_task(source, task, options, device if task.kind == "matrix" else "cpu"))


def _run_batch(source, batch, options, on_result, torch_device, device, load_matrix, run_task) -> None:
    loaded = []
    for task in batch:
        try:
            W = load_matrix(source, task.key)
        except SourceError:
            on_result(task, run_task(source, task, options, "cpu"))  # reports the read error as a row
            continue
        if not np.all(np.isfinite(W)):
            on_result(task, run_task(source, task, options, "cpu"))  # a 'failed' row
            continue
        loaded.append((task, W))
    if not loaded:
        return
    evals = batched_gram_eigenvalues([W for _, W in loaded], options.precision, torch_device)
    for (task, W), ev in zip(loaded, evals):
        lead = task.lead()
        on_result(task, [{**lead, **analyze_matrix(task.key, W, options, device, evals=ev)}])
