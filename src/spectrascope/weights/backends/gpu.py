"""The GPU backend: full spectra with torch, batched across matrices of the same shape (CUDA,
or the CPU in tests).

On a GPU the per-matrix cost of ``A^T A`` and ``eigvalsh`` is dominated by kernel launches
and host-device copies for matrices of LLM size; stacking the matrices of one shape (all q
projections, all MLP up projections, ...) into one batch makes one ``bmm`` and one batched
``torch.linalg.eigvalsh`` call per batch (:mod:`~spectrascope.weights.torch_kernels`). The
power-law fit and the other metrics then run on the CPU from the returned eigenvalues (the
same code as the numpy path), so the torch path and the numpy path differ only by
floating-point rounding in the eigenvalues.

Memory: a batch holds at most ``batch_bytes`` of float32 tensors on the host and their
working copies on the device; matrices that take a partial spectrum and head tasks run one
at a time through the ordinary path.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby

import numpy as np

from ...errors import SourceError
from ...models.tensor_source import TensorSource
from ..analysis import uses_partial
from ..options import Device, WeightsOptions
from ..plan import Task, TaskKind
from ..tasks import failed_rows, load_matrix, run_task
from ..torch_kernels import batched_gram_eigenvalues

DEFAULT_BATCH_BYTES = 2 * 2**30
"""Bytes of float32 matrices in one batch."""

OnResult = Callable[[Task, list[dict]], None]


def _oriented_shape(task: Task) -> tuple[int, int]:
    return (max(task.shape), min(task.shape))


def execute_batched(
    source: TensorSource,
    tasks: list[Task],
    options: WeightsOptions,
    on_result: OnResult,
    torch_device: str = "cuda",
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> None:
    """Run tasks in process: full-spectrum matrix tasks batched by shape on ``torch_device``,
    everything else (heads, partial spectra) one task at a time."""
    from threadpoolctl import threadpool_limits

    def batchable(t: Task) -> bool:
        return t.kind is TaskKind.MATRIX and len(t.shape) == 2 and not uses_partial(t.shape, options)

    singles = [t for t in tasks if not batchable(t)]
    matrix_tasks = sorted((t for t in tasks if batchable(t)), key=_oriented_shape)
    device = Device.CUDA if torch_device.startswith("cuda") else Device.CPU
    with threadpool_limits(1):
        for shape, group in groupby(matrix_tasks, key=_oriented_shape):
            group = list(group)
            size = max(1, batch_bytes // max(4 * shape[0] * shape[1], 1))
            for start in range(0, len(group), size):
                _run_batch(source, group[start : start + size], options, on_result, torch_device, device)
        for task in singles:
            on_result(task, run_task(source, task, options, device if task.kind is TaskKind.MATRIX else Device.CPU))


def _run_batch(
    source: TensorSource,
    batch: list[Task],
    options: WeightsOptions,
    on_result: OnResult,
    torch_device: str,
    device: Device,
) -> None:
    loaded = []
    for task in batch:
        try:
            W = load_matrix(source, task.key)
        except SourceError as err:
            on_result(task, failed_rows(task, str(err)))
            continue
        if not np.all(np.isfinite(W)):
            on_result(task, run_task(source, task, options, Device.CPU, matrix=W))  # a 'failed' row
            continue
        loaded.append((task, W))
    if not loaded:
        return
    evals = batched_gram_eigenvalues([W for _, W in loaded], options.precision, torch_device)
    for (task, W), ev in zip(loaded, evals, strict=True):
        on_result(task, run_task(source, task, options, device, evals=ev, matrix=W))
