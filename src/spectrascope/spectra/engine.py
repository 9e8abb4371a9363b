"""The weight-spectrum engine: plan per-tensor tasks, run them in parallel with bounded
memory, write each result as it arrives, resume what was done.

Parallelism: ``workers`` processes (fork), each with single-threaded BLAS, each holding at
most one tensor (or, for head tasks, one block's q/k/v/o) at a time. File-backed sources are
reopened in each worker from their picklable spec; in-memory sources and CUDA run in-process.
Two single-threaded processes beat one two-threaded process on matrices of this size.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import SourceError, SpectrascopeError
from ..models.open_source import reopen
from ..models.roles import family, head_geometry, tensor_role
from ..models.tensor_source import SourceSpec, TensorSource
from .heads import head_rows, split_projections
from .matrix_analysis import analyze_matrix, skip_reason
from .options import WeightsOptions

LEAD_COLUMNS = ["name", "block", "role", "N", "M", "Q"]
HEAD_ROLES = {"q", "k", "v", "o", "qkv"}


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


@dataclass
class Plan:
    matrix_tasks: list[Task] = field(default_factory=list)
    head_tasks: list[Task] = field(default_factory=list)
    skipped_rows: list[dict] = field(default_factory=list)


def is_float_dtype(dtype: str) -> bool:
    """True for floating-point and quantized storage types (not integer buffers like position_ids)."""
    d = dtype.lower()
    return not (d.startswith(("int", "uint", "bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")))


def plan_tasks(source: TensorSource, options: WeightsOptions) -> Plan:
    """Every 2-D tensor becomes a matrix task (or a 'skipped' row); with options.heads, every
    block with attention projections becomes a head task."""
    config = source.config()
    plan = Plan()
    by_block: dict[int, dict[str, str]] = {}
    for info in source.tensors():
        if len(info.shape) != 2 or not is_float_dtype(info.dtype):
            continue
        block, role = tensor_role(info.name, config)
        if role in HEAD_ROLES and block >= 0:
            by_block.setdefault(block, {})[role] = info.name
        if not options.matrices:
            continue
        reason = skip_reason(info.shape, options)
        if reason:
            N, M = max(info.shape), min(info.shape)
            plan.skipped_rows.append({"name": info.name, "block": block, "role": role, "N": N, "M": M,
                                      "Q": N / M if M else np.nan, "status": "skipped", "reason": reason})
        else:
            plan.matrix_tasks.append(Task(info.name, "matrix", (info.name,), block, shape=info.shape, role=role))
    if options.heads:
        if head_geometry(config) is None or family(config) is None:
            raise SpectrascopeError("--heads needs a supported architecture with head counts in its config")
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


def run_task(spec_or_source, task: Task, options: WeightsOptions, device: str = "cpu") -> list[dict]:
    """Execute one task; errors reading a tensor become a 'failed' row, not a crash."""
    source = _source_for(spec_or_source)
    config = source.config()
    if task.kind == "matrix":
        lead = {"name": task.key, "block": task.block, "role": task.role}
        try:
            W = source.load(task.key)
        except SourceError as err:
            N, M = max(task.shape), min(task.shape)
            return [{**lead, "N": N, "M": M, "Q": N / M, "status": "failed", "reason": str(err)}]
        return [{**lead, **analyze_matrix(task.key, W, options, device)}]
    geom = head_geometry(config)
    try:
        tensors = {role: source.load(name) for role, name in zip(task.roles, task.names)}
        proj = split_projections(tensors, family(config) or "", geom)
        return head_rows(proj, geom, task.block)
    except (SourceError, ValueError) as err:
        return [{"block": task.block, "head": -1, "kv_head": -1, "circuit": "all", "status": "failed", "reason": str(err)}]


def execute(
    source: TensorSource,
    tasks: list[Task],
    options: WeightsOptions,
    workers: int,
    on_result: Callable[[Task, list[dict]], None],
) -> None:
    """Run tasks, calling ``on_result`` in the driver as each finishes (in completion order)."""
    device = options.resolved_device()
    spec = source.spec()
    if workers <= 1 or spec is None or device == "cuda" or len(tasks) <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # multi-threaded BLAS is slower on matrices of this size
            for task in tasks:
                on_result(task, run_task(source, task, options, device))
        return
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
        futures = {pool.submit(run_task, spec, task, options, device): task for task in tasks}
        for future in as_completed(futures):
            on_result(futures[future], future.result())


def natural_key(name: str) -> tuple:
    """Sort key under which layers.2 comes before layers.10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def order_rows(rows: list[dict], names: list[str]) -> pd.DataFrame:
    """Matrix rows as a DataFrame in natural name order, lead columns first (a GGUF and a
    safetensors copy of one model give the same table)."""
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=LEAD_COLUMNS + ["status", "reason"])
    del names  # rows are ordered by name, numbers compared as numbers, whatever the file order
    df = df.iloc[sorted(range(len(df)), key=lambda i: natural_key(df["name"].iat[i]))]
    return df[LEAD_COLUMNS + [c for c in df.columns if c not in LEAD_COLUMNS]].reset_index(drop=True)


def iter_names(source: TensorSource) -> Iterator[str]:
    return (i.name for i in source.tensors())
