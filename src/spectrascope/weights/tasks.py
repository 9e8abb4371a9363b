"""Running one task wherever a backend puts it: read its tensors, analyze, return its rows.

Everything here is what a backend needs from the pipeline (and all it needs): the worker's
cache of reopened sources, the matrix loader, :func:`run_task`, and :func:`task_bytes`, the
estimated working set by which the backends bound their memory. Backends import this module;
it imports no backend.
"""

from __future__ import annotations

import numpy as np

from ..arch import read_geometry, spec_for
from ..errors import SourceError
from ..models.open_source import reopen
from ..models.safetensors_direct import load_matrix as load_stored_matrix
from ..models.safetensors_direct import load_stacked_matrix
from ..models.tensor_source import SourceSpec, TensorSource
from ..spectra.esd import LARGE_M
from ..spectra.heads import head_rows
from .analysis import analyze_matrix, uses_partial
from .options import Device, Precision, WeightsOptions
from .plan import EXPERT_KEY, Task, TaskKind
from .projections import fold_qk_norms, split_projections
from .rows import failed_head_rows, failed_row

SourceRef = SourceSpec | TensorSource
"""What a task receives: a source, or the picklable spec a worker process reopens it from."""

_WORKER_SOURCES: dict[SourceSpec, TensorSource] = {}
DEFAULT_TASK_BYTES = 64 * 2**20
"""Working set assumed for a task whose size is not known from a shape (a heads task)."""


def clear_worker_sources() -> None:
    """Forget the sources this process reopened (a fresh worker starts empty)."""
    _WORKER_SOURCES.clear()


def source_for(ref: SourceRef) -> TensorSource:
    """The source itself, or the one reopened from its spec (once per process)."""
    if not isinstance(ref, SourceSpec):
        return ref
    if ref not in _WORKER_SOURCES:
        _WORKER_SOURCES[ref] = reopen(ref)
    return _WORKER_SOURCES[ref]


def load_matrix(source: TensorSource, key: str) -> np.ndarray:
    """One matrix as float32 by task key: a tensor name, or ``NAME[e]`` for expert ``e`` of a
    stacked tensor (safetensors are read directly, see models/safetensors_direct.py)."""
    expert_key = EXPERT_KEY.match(key)
    if expert_key is not None:
        return load_stacked_matrix(source, expert_key.group("name"), int(expert_key.group("expert")))
    return load_stored_matrix(source, key)


def task_bytes(task: Task, options: WeightsOptions) -> int:
    """Estimated peak working set of a task in a worker (bytes): the float32 tensor, the
    float64 copy or Gram matrix of a full spectrum, the Krylov basis of a partial one."""
    if task.kind is not TaskKind.MATRIX or len(task.shape) != 2:
        return DEFAULT_TASK_BYTES
    N, M = max(task.shape), min(task.shape)
    item = 8 if options.precision is Precision.EXACT else 4
    size = 4 * N * M + 32 * 2**20
    if uses_partial(task.shape, options):
        from ..spectra.partial import GRAM_MAX_M, PartialConfig

        size += int(PartialConfig().max_fraction * M) * M * item  # the Krylov basis
        if M <= GRAM_MAX_M:
            size += M * M * item  # the Gram operator
        elif item == 8 and N * M * 8 <= 128 * 2**20:
            size += N * M * 8  # a float64 copy of W
    else:
        copy = N * M * item if (M < LARGE_M and item == 8) else 0
        size += copy + 2 * M * M * item
    if options.randomize:
        size += 4 * N * M + M * M * item
    return size


def run_task(
    ref: SourceRef,
    task: Task,
    options: WeightsOptions,
    device: Device = Device.CPU,
    evals: np.ndarray | None = None,
    matrix: np.ndarray | None = None,
) -> list[dict]:
    """Execute one task; a tensor that cannot be read becomes a 'failed' row, not a crash.

    Args:
        evals, matrix: for a matrix task whose matrix a backend already loaded and whose full
            spectrum it already computed (the GPU backend's batches).
    Returns:
        the task's rows (one for a matrix task; one per head and circuit for a heads task).
    """
    source = source_for(ref)
    if task.kind is TaskKind.MATRIX:
        if matrix is None:
            try:
                matrix = load_matrix(source, task.key)
            except SourceError as err:
                return failed_rows(task, str(err))
        return [{**task.lead(), **analyze_matrix(task.key, matrix, options, device, evals=evals)}]
    return _head_task_rows(source, task)


def failed_rows(task: Task, reason: str) -> list[dict]:
    """The rows that stand for a task that could not run (its matrix, or its block's heads)."""
    if task.kind is TaskKind.MATRIX:
        return [failed_row(task.lead(), reason)]
    return failed_head_rows(task.block, reason)


def _head_task_rows(source: TensorSource, task: Task) -> list[dict]:
    config = source.config()
    spec = spec_for(config)
    geom = read_geometry(config, spec.attention)
    try:
        tensors = {role: source.load(name) for role, name in zip(task.roles, task.names, strict=True)}
        proj = fold_qk_norms(split_projections(tensors, spec, geom), tensors, spec, geom)
        return head_rows(proj, geom, task.block)
    except (SourceError, ValueError) as err:
        return failed_rows(task, str(err))
