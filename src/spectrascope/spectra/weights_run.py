"""Run a full weight analysis: plan, execute, log rows as they arrive, write the tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..errors import SpectrascopeError
from ..models.open_source import open_source
from ..models.tensor_source import TensorSource
from ..progress import progress_bar
from ..tables import RowLog, write_table
from .engine import Task, execute, order_rows, plan_tasks
from .options import WeightsOptions
from .summary import summary_dict

if TYPE_CHECKING:
    import torch

MATRIX_LOG = "weights.rows.jsonl"
HEADS_LOG = "weights_heads.rows.jsonl"
HEAD_LEAD = ["block", "head", "kv_head", "circuit"]
OPTIONS_FILE = "weights.options.json"


def _fingerprint(options: WeightsOptions) -> dict:
    """The options that change results (not where they are computed)."""
    return {k: v for k, v in options.to_dict().items() if k != "device"}


def _check_resumed_options(logged: dict, options: WeightsOptions) -> None:
    if logged != _fingerprint(options):
        changed = sorted(k for k, v in _fingerprint(options).items() if logged.get(k) != v)
        raise SpectrascopeError(
            f"--resume with different options than the interrupted run ({', '.join(changed)}); "
            "rerun with the same options or without --resume"
        )


def run_weights(
    model: "str | Path | torch.nn.Module | Mapping | TensorSource",
    options: WeightsOptions = WeightsOptions(),
    out_dir: str | Path | None = None,
    workers: int = 1,
    resume: bool = False,
    show_progress: bool = False,
    allow_pickle: bool = False,
    backend: str = "local",
    address: str | None = None,
    memory_budget: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Analyze every weight matrix of a model.

    Args:
        model: anything :func:`open_source` accepts, or an opened source.
        out_dir: if given, rows are appended to ``weights.rows.jsonl`` as they finish and the
            tables ``weights.parquet/.csv`` (+ ``weights_heads.*``) and ``summary.json`` are
            written at the end.
        resume: skip tasks already in the row logs of ``out_dir``.
        backend: "local" (process pool of ``workers``) or "ray" (a Ray cluster; see
            ray_backend.py). Results are the same row for row.
        address: Ray cluster address ("auto" for a running one); None starts a local one
            with ``workers`` CPUs.
        memory_budget: bytes of tensor working sets in flight at once (local backend;
            default 2 GiB).
    Returns:
        (matrix table, head table or None).
    """
    if backend == "ray":
        from .ray_backend import import_ray

        import_ray()  # one clear line if Ray is missing, before anything is opened or written
    elif backend != "local":
        raise SpectrascopeError(f"unknown backend {backend!r} (expected local or ray)")
    source = model if hasattr(model, "tensors") and hasattr(model, "load") else open_source(model, allow_pickle)
    plan = plan_tasks(source, options)
    logs = {"matrix": RowLog(Path(out_dir) / MATRIX_LOG), "heads": RowLog(Path(out_dir) / HEADS_LOG)} if out_dir else None
    if logs and not resume:
        for log in logs.values():
            log.reset()
    results: dict[str, list[dict]] = {}
    if logs:
        for log in logs.values():
            results.update(log.done())
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        options_file = Path(out_dir) / OPTIONS_FILE
        if resume and options_file.exists():
            _check_resumed_options(json.loads(options_file.read_text()), options)
        options_file.write_text(json.dumps(_fingerprint(options)))
    todo = [t for t in plan.matrix_tasks + plan.head_tasks if t.key not in results]

    with progress_bar("weight spectra", total=len(plan.matrix_tasks) + len(plan.head_tasks), enabled=show_progress) as advance:
        advance(len(plan.matrix_tasks) + len(plan.head_tasks) - len(todo))

        def on_result(task: Task, rows: list[dict]) -> None:
            results[task.key] = rows
            if logs:
                logs[task.kind].append(task.key, rows)
            advance(1)

        execute(source, todo, options, workers, on_result, backend=backend, address=address,
                memory_budget=memory_budget)

    names = [i.name for i in source.tensors()]
    matrix_rows = [r for t in plan.matrix_tasks for r in results[t.key]] + plan.skipped_rows
    matrices = order_rows(matrix_rows, names)
    heads = None
    if options.heads:
        head_rows = [r for t in plan.head_tasks for r in results[t.key]]
        heads = pd.DataFrame(head_rows)
        if not heads.empty:
            heads = heads.sort_values(["block", "circuit", "head"], kind="stable").reset_index(drop=True)
            heads = heads[HEAD_LEAD + [c for c in heads.columns if c not in HEAD_LEAD]]
    if out_dir:
        write_table(matrices, out_dir, "weights")
        if heads is not None:
            write_table(heads, out_dir, "weights_heads")
        summary = {"source": source.description, "options": options.to_dict(), **summary_dict(matrices, heads)}
        (Path(out_dir) / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return matrices, heads
