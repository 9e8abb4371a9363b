"""The weight-spectrum engine: plan per-tensor tasks, run them in parallel with bounded
memory, write each result as it arrives, resume what was done.

Parallelism: ``workers`` processes (fork), each with single-threaded BLAS, each holding at
most one tensor (or, for head tasks, one block's q/k/v/o) at a time. File-backed sources are
reopened in each worker from their picklable spec; in-memory sources run in-process.
Two single-threaded processes beat one two-threaded process on matrices of this size.

Memory: besides one tensor per worker, the driver admits a task only while the estimated
working sets of the tasks in flight (:func:`task_bytes`) fit in ``memory_budget`` bytes
(one task always runs), so the peak is about (workers + 1) x the interpreter's own
footprint plus the budget, whatever the worker count. bf16/f16/f32 tensors of a
safetensors checkpoint are read straight from the file in row chunks (no torch, no mmap
pages held, no second full-size copy).

Devices and backends: on CUDA (``device="cuda"``, or "auto" with a GPU) full spectra are
computed in process on the GPU, batched across matrices of the same shape (gpu.py);
``backend="ray"`` sends per-tensor tasks to a Ray cluster (ray_backend.py).
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..arch import Capability, find_spec, read_geometry, spec_for, weight_role
from ..arch.roles import ATTENTION_ROLES, VECTOR_ROLES
from ..errors import ArchitectureError, SourceError, SpectrascopeError
from ..models.open_source import reopen
from ..models.tensor_source import SourceSpec, TensorSource
from .esd import LARGE_M
from .heads import fold_qk_norms, head_rows, split_projections
from .matrix_analysis import analyze_matrix, skip_reason, uses_partial
from .options import WeightsOptions

DEFAULT_MEMORY_BUDGET = 2 * 2**30
"""Default bytes of tensor working sets in flight at once (see :func:`task_bytes`)."""

LEAD_COLUMNS = ["name", "block", "role", "expert", "N", "M", "Q"]
HEAD_ROLES = set(ATTENTION_ROLES) | set(VECTOR_ROLES)
EXPERT_KEY = re.compile(r"^(?P<name>.+)\[(?P<expert>\d+)\]$")
"""Task key of one expert's matrix in a stacked ``(n_experts, out, in)`` tensor: ``NAME[e]``."""


@dataclass(frozen=True)
class Task:
    """One unit of work: a matrix (kind 'matrix') or one block's heads (kind 'heads')."""

    key: str
    kind: str
    names: tuple[str, ...]
    block: int = -1
    roles: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()
    role: str = "other"
    expert: int | None = None

    def lead(self) -> dict:
        """The lead columns of a matrix row: name, block, role, expert."""
        return {"name": self.key, "block": self.block, "role": self.role, "expert": self.expert}


@dataclass
class Plan:
    matrix_tasks: list[Task] = field(default_factory=list)
    head_tasks: list[Task] = field(default_factory=list)
    skipped_rows: list[dict] = field(default_factory=list)


def is_float_dtype(dtype: str) -> bool:
    """True for floating-point and quantized storage types (not integer buffers like position_ids)."""
    d = dtype.lower()
    return not (d.startswith(("int", "uint", "bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")))


def _matrices(name: str, shape: tuple[int, ...], stacked: bool) -> list[tuple[str, tuple[int, ...], int | None]]:
    """(task key, 2-D shape, expert) of each matrix in a tensor: itself, or one per expert."""
    if stacked and len(shape) == 3:
        return [(f"{name}[{e}]", tuple(shape[1:]), e) for e in range(shape[0])]
    return [(name, tuple(shape), None)] if len(shape) == 2 else []


def plan_tasks(source: TensorSource, options: WeightsOptions) -> Plan:
    """Every matrix becomes a matrix task (or a 'skipped' row): each 2-D tensor, and each
    expert's matrix of a stacked ``(n_experts, out, in)`` tensor (key ``NAME[e]``). With
    options.heads, every block with attention projections becomes a head task."""
    config = source.config()
    spec = find_spec(config)
    plan = Plan()
    by_block: dict[int, dict[str, str]] = {}
    unmatched: list[str] = []
    matched = 0
    for info in source.tensors():
        if not is_float_dtype(info.dtype):
            continue
        role = weight_role(info.name, spec)
        if role.block >= 0 and len(info.shape) >= 2:
            matched += role.known
            if not role.known:
                unmatched.append(info.name)
        if role.role in HEAD_ROLES and role.block >= 0 and len(info.shape) <= 2:
            by_block.setdefault(role.block, {})[role.role] = info.name
        if not options.matrices:
            continue
        for key, shape, stacked_expert in _matrices(info.name, tuple(info.shape), role.stacked):
            expert = role.expert if stacked_expert is None else stacked_expert
            reason = skip_reason(shape, options)
            if reason:
                N, M = max(shape), min(shape)
                plan.skipped_rows.append({"name": key, "block": role.block, "role": role.role, "expert": expert, "N": N,
                                          "M": M, "Q": N / M if M else np.nan, "status": "skipped", "reason": reason})
            else:
                plan.matrix_tasks.append(Task(key, "matrix", (key,), role.block, shape=shape, role=role.role,
                                              expert=expert))
    if spec is not None and unmatched and not matched:
        raise ArchitectureError(
            f"the tensor names do not match the config's family ({spec.name}): no block matrix has a name of that "
            f"family (e.g. {unmatched[0]!r}); is config.json the one of these weights?"
        )
    if options.heads:
        try:
            spec = spec_for(config)
        except ArchitectureError as err:
            raise ArchitectureError(f"--heads: {err}") from None
        spec.require(Capability.HEADS, "--heads")
        if read_geometry(config, spec.attention) is None:
            raise ArchitectureError(f"--heads: the {spec.name} config gives no head counts")
        for block, roles in sorted(by_block.items()):
            if {"q", "k", "v", "o"} <= roles.keys() or {"qkv", "o"} <= roles.keys():
                names = tuple(roles.values())
                plan.head_tasks.append(Task(f"heads:{block}", "heads", names, block, tuple(roles.keys())))
    return plan


# ----------------------------------------------------------------------------- execution

_WORKER_SOURCES: dict[SourceSpec, TensorSource] = {}


def _worker_init() -> None:
    import sys

    from threadpoolctl import threadpool_limits

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    threadpool_limits(1)
    _WORKER_SOURCES.clear()


def _source_for(spec_or_source) -> TensorSource:
    if not isinstance(spec_or_source, SourceSpec):
        return spec_or_source
    if spec_or_source not in _WORKER_SOURCES:
        _WORKER_SOURCES[spec_or_source] = reopen(spec_or_source)
    return _WORKER_SOURCES[spec_or_source]


# ----------------------------------------------------------------------------- direct reads

_ST_DTYPES = {"BF16": (np.uint16, 2), "F16": (np.float16, 2), "F32": (np.float32, 4), "F64": (np.float64, 8)}
_READ_CHUNK_BYTES = 16 * 2**20


class SafetensorsDirect:
    """Reads 2-D bf16/f16/f32/f64 tensors of safetensors files into float32 numpy arrays,
    row chunk by row chunk with plain reads: peak memory is the float32 result plus one
    chunk (no torch import for bf16, no memory-mapped pages kept resident, no full-size
    intermediate). Anything else (other dtypes, errors) is left to the source's ``load``."""

    def __init__(self, paths: tuple[str, ...]):
        self.entries: dict[str, tuple[str, int, str, tuple]] = {}
        import json
        import struct

        for path in paths:
            with open(path, "rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size))
            for name, meta in header.items():
                if name != "__metadata__":
                    self.entries[name] = (path, 8 + size + meta["data_offsets"][0], meta["dtype"], tuple(meta["shape"]))

    def can_read(self, name: str) -> bool:
        entry = self.entries.get(name)
        return entry is not None and entry[2] in _ST_DTYPES and len(entry[3]) == 2

    def can_read_slice(self, name: str) -> bool:
        """Whether ``name`` is a 3-D tensor of a readable dtype (one expert per leading index)."""
        entry = self.entries.get(name)
        return entry is not None and entry[2] in _ST_DTYPES and len(entry[3]) == 3

    def load(self, name: str) -> np.ndarray:
        path, offset, dtype, (rows, cols) = self.entries[name]
        return self._read(name, path, offset, dtype, rows, cols)

    def load_slice(self, name: str, index: int) -> np.ndarray:
        """Matrix ``index`` of a 3-D ``(n, rows, cols)`` tensor; only its bytes are read."""
        path, offset, dtype, (n, rows, cols) = self.entries[name]
        if not 0 <= index < n:
            raise ValueError(f"{name!r} has {n} matrices, not {index + 1}")
        return self._read(name, path, offset + index * rows * cols * _ST_DTYPES[dtype][1], dtype, rows, cols)

    def _read(self, name: str, path: str, offset: int, dtype: str, rows: int, cols: int) -> np.ndarray:
        np_dtype, itemsize = _ST_DTYPES[dtype]
        out = np.empty((rows, cols), dtype=np.float32)
        step = max(1, _READ_CHUNK_BYTES // max(1, cols * itemsize))
        with open(path, "rb") as fh:
            fh.seek(offset)
            for start in range(0, rows, step):
                stop = min(rows, start + step)
                count = (stop - start) * cols
                buf = np.fromfile(fh, dtype=np_dtype, count=count)
                if buf.size != count:
                    raise SourceError(f"{path}: tensor {name!r} is truncated")
                buf = buf.reshape(stop - start, cols)
                if dtype == "BF16":  # bf16 is the top half of a float32: widen and shift in place
                    bits = out[start:stop].view(np.uint32)
                    bits[...] = buf
                    bits <<= np.uint32(16)
                else:
                    out[start:stop] = buf
        return out


_DIRECT: dict[SourceSpec, SafetensorsDirect | None] = {}


def load_matrix(source: TensorSource, name: str) -> np.ndarray:
    """One matrix as float32 (a task key: a tensor name, or ``NAME[e]`` for expert ``e`` of
    a stacked tensor), read directly from a safetensors file when possible."""
    expert_key = EXPERT_KEY.match(name)
    if expert_key is not None:
        return _load_expert(source, expert_key.group("name"), int(expert_key.group("expert")))
    spec = source.spec() if hasattr(source, "spec") else None
    if spec is not None and spec.kind == "safetensors":
        direct = _DIRECT[spec] if spec in _DIRECT else _direct_reader(spec)
        if direct is not None and direct.can_read(name):
            try:
                return direct.load(name)
            except (OSError, ValueError):
                pass  # let the source report the problem in its own words
    return source.load(name)


def _load_expert(source: TensorSource, name: str, expert: int) -> np.ndarray:
    """Expert ``expert``'s ``(out, in)`` matrix of a stacked tensor (only that slice read from safetensors)."""
    spec = source.spec() if hasattr(source, "spec") else None
    if spec is not None and spec.kind == "safetensors":
        direct = _DIRECT[spec] if spec in _DIRECT else _direct_reader(spec)
        if direct is not None and direct.can_read_slice(name):
            try:
                return direct.load_slice(name, expert)
            except (OSError, ValueError):
                pass
    stacked = source.load(name)
    if stacked.ndim != 3 or not 0 <= expert < stacked.shape[0]:
        raise SourceError(f"{name!r} has shape {tuple(stacked.shape)}: no expert {expert}")
    return np.ascontiguousarray(stacked[expert], dtype=np.float32)


def _direct_reader(spec: SourceSpec) -> SafetensorsDirect | None:
    try:
        _DIRECT[spec] = SafetensorsDirect(spec.paths)
    except Exception:
        _DIRECT[spec] = None
    return _DIRECT[spec]


def task_bytes(task: Task, options: WeightsOptions) -> int:
    """Estimated peak working set of a task in a worker (bytes): the float32 tensor, the
    float64 copy or Gram matrix of a full spectrum, the Krylov basis of a partial one."""
    if task.kind != "matrix" or len(task.shape) != 2:
        return 64 * 2**20
    N, M = max(task.shape), min(task.shape)
    item = 8 if options.precision == "exact" else 4
    size = 4 * N * M + 32 * 2**20
    if uses_partial(task.shape, options):
        from .partial import GRAM_MAX_M, PartialConfig

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


def run_task(spec_or_source, task: Task, options: WeightsOptions, device: str = "cpu") -> list[dict]:
    """Execute one task; errors reading a tensor become a 'failed' row, not a crash."""
    source = _source_for(spec_or_source)
    config = source.config()
    if task.kind == "matrix":
        lead = task.lead()
        try:
            W = load_matrix(source, task.key)
        except SourceError as err:
            N, M = max(task.shape), min(task.shape)
            return [{**lead, "N": N, "M": M, "Q": N / M, "status": "failed", "reason": str(err)}]
        return [{**lead, **analyze_matrix(task.key, W, options, device)}]
    spec = spec_for(config)
    geom = read_geometry(config, spec.attention)
    try:
        tensors = {role: source.load(name) for role, name in zip(task.roles, task.names)}
        proj = fold_qk_norms(split_projections(tensors, spec, geom), tensors, spec, geom)
        return head_rows(proj, geom, task.block)
    except (SourceError, ValueError) as err:
        return [{"block": task.block, "head": -1, "kv_head": -1, "circuit": "all", "status": "failed", "reason": str(err)}]


def execute(
    source: TensorSource,
    tasks: list[Task],
    options: WeightsOptions,
    workers: int,
    on_result: Callable[[Task, list[dict]], None],
    backend: str = "local",
    address: str | None = None,
    memory_budget: int | None = None,
) -> None:
    """Run tasks, calling ``on_result`` in the driver as each finishes (in completion order).

    Args:
        backend: "local" (process pool) or "ray" (see ray_backend.py).
        address: Ray cluster address ("auto" for a running one; None starts a local one).
        memory_budget: bytes of task working sets admitted at once (default 2 GiB).
    """
    if backend == "ray":
        from .ray_backend import execute_ray

        execute_ray(source, tasks, options, workers, on_result, address=address)
        return
    if backend != "local":
        raise SpectrascopeError(f"unknown backend {backend!r} (expected local or ray)")
    device = options.resolved_device()
    if device == "cuda":
        from .gpu import execute_batched

        execute_batched(source, tasks, options, on_result, torch_device="cuda")
        return
    spec = source.spec()
    if workers <= 1 or spec is None or len(tasks) <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # multi-threaded BLAS is slower on matrices of this size
            for task in tasks:
                on_result(task, run_task(source, task, options, device))
        return
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
        queue = list(tasks)
        futures: dict = {}
        in_flight = 0

        def admit() -> None:
            nonlocal in_flight
            while queue and len(futures) < 2 * workers:  # a little queue keeps workers busy
                need = task_bytes(queue[0], options)
                if futures and in_flight + need > budget:
                    return
                task = queue.pop(0)
                futures[pool.submit(run_task, spec, task, options, device)] = (task, need)
                in_flight += need

        admit()
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                task, need = futures.pop(future)
                in_flight -= need
                on_result(task, future.result())
            admit()


def natural_key(name: str) -> tuple:
    """Sort key under which layers.2 comes before layers.10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def order_rows(rows: list[dict], names: list[str]) -> pd.DataFrame:
    """Matrix rows as a DataFrame in natural name order, lead columns first (a GGUF and a
    safetensors copy of one model give the same table)."""
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=LEAD_COLUMNS + ["status", "reason"])
    df["expert"] = (df["expert"] if "expert" in df else pd.Series(pd.NA, index=df.index)).astype("Int64")
    del names  # rows are ordered by name, numbers compared as numbers, whatever the file order
    df = df.iloc[sorted(range(len(df)), key=lambda i: natural_key(df["name"].iat[i]))]
    return df[LEAD_COLUMNS + [c for c in df.columns if c not in LEAD_COLUMNS]].reset_index(drop=True)


def iter_names(source: TensorSource) -> Iterator[str]:
    return (i.name for i in source.tensors())
