"""Run a full weight analysis: plan, execute on a backend, log rows as they arrive, write tables.

With an output folder, the run holds the folder (:class:`~spectrascope.outdir.OutputFolder`)
and writes there:

- ``weights.run.json`` first: the run's fingerprint (package version, model files or
  contents, every option that changes the numbers, the seed among them);
- ``weights.rows.jsonl`` / ``weights_heads.rows.jsonl``: each task's rows as it ends;
- at the end ``weights.parquet/.csv``, ``weights_heads.parquet/.csv`` (with heads) and
  ``summary.json``, each renamed into place when complete.

Without ``resume`` every file of an earlier weights run in the folder is removed first, so
nothing of it stays beside the new tables. With ``resume`` the logged rows are reused only
when the recorded fingerprint equals the current one; otherwise one line says what differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import pandas as pd

from .. import __version__
from ..errors import ResumeError, at_least
from ..fingerprint import differences, model_identity, source_identity
from ..models.open_source import open_source
from ..models.tensor_source import TensorSource
from ..outdir import OutputFolder
from ..progress import progress_bar
from ..tables import RowLog, write_table
from .backends import check_backend, execute
from .options import Backend, WeightsOptions
from .plan import Plan, Task, TaskKind, plan_tasks
from .rows import head_table, matrix_table
from .summary import summary_dict

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch

    ModelLike: TypeAlias = str | Path | torch.nn.Module | Mapping | TensorSource

MATRIX_LOG = "weights.rows.jsonl"
HEADS_LOG = "weights_heads.rows.jsonl"
RUN_FILE = "weights.run.json"
SUMMARY_FILE = "summary.json"
TABLES = ("weights", "weights_heads")
OUTPUTS = (
    RUN_FILE,
    MATRIX_LOG,
    HEADS_LOG,
    SUMMARY_FILE,
    "weights.options.json",
    *(f"{t}.{ext}" for t in TABLES for ext in ("parquet", "csv")),
)
"""Every file a weights run writes (and the options file of earlier versions)."""


def weights_fingerprint(model: ModelLike, source: TensorSource, options: WeightsOptions) -> dict:
    """What the tables depend on: version, model (files by a path or name, else contents), options."""
    from_path = isinstance(model, (str, Path))
    identity = model_identity(model) if from_path else source_identity(source)
    return {"version": __version__, "model": identity, "options": options.result_options()}


def _is_source(model: object) -> bool:
    return hasattr(model, "tensors") and hasattr(model, "load")


def run_weights(
    model: ModelLike,
    options: WeightsOptions = WeightsOptions(),  # noqa: B008 - frozen, so one shared default is safe
    out_dir: str | Path | None = None,
    workers: int = 1,
    resume: bool = False,
    show_progress: bool = False,
    allow_pickle: bool = False,
    backend: Backend | str = Backend.LOCAL,
    address: str | None = None,
    memory_budget: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Analyze every weight matrix of a model.

    Args:
        model: anything :func:`open_source` accepts, or an opened source.
        out_dir: if given, the folder is held for this run and gets the row logs, the tables
            and ``summary.json`` (see the module docstring).
        workers: worker processes (>= 1).
        resume: reuse the rows logged in ``out_dir`` by an interrupted run with the same
            fingerprint (model, options, seed, version); a different fingerprint is refused.
        backend: :class:`~spectrascope.weights.backends.Backend`: "local" (process pool of
            ``workers``; on CUDA, batches on the GPU) or "ray" (a Ray cluster). Results are
            the same row for row.
        address: Ray cluster address ("auto" for a running one); None starts a local one
            with ``workers`` CPUs.
        memory_budget: bytes of tensor working sets in flight at once (local backend;
            default 2 GiB; > 0).
    Returns:
        (matrix table, head table or None). The matrix table has a row for every tensor.
    Raises:
        OptionError: an option out of range (checked before any work). OutputError: the
        folder cannot be used. ResumeError: ``resume`` over another run's rows.
    """
    at_least(workers, 1, "workers")
    if memory_budget is not None:
        at_least(memory_budget, 1, "memory_budget")
    chosen = check_backend(backend, options)
    run = _Run(options, chosen, workers, address, memory_budget, show_progress)
    if out_dir is None:
        source = model if _is_source(model) else open_source(model, allow_pickle)
        return run.tables(source, plan_tasks(source, options), {})
    with OutputFolder(out_dir, option="out_dir") as folder:
        source = model if _is_source(model) else open_source(model, allow_pickle)
        plan = plan_tasks(source, options)
        fingerprint = weights_fingerprint(model, source, options)
        done = _start(folder, fingerprint, resume)
        logs = {TaskKind.MATRIX: RowLog(folder.path / MATRIX_LOG), TaskKind.HEADS: RowLog(folder.path / HEADS_LOG)}
        matrices, heads = run.tables(source, plan, done, logs)
        write_table(matrices, folder.path, "weights")
        if heads is not None:
            write_table(heads, folder.path, "weights_heads")
        summary = {"source": source.description, "options": options.to_dict(), **summary_dict(matrices, heads)}
        folder.write_text(SUMMARY_FILE, json.dumps(summary, indent=2, default=str))
    return matrices, heads


def _start(folder: OutputFolder, fingerprint: dict, resume: bool) -> dict[str, list[dict]]:
    """Prepare the folder for a run; return the rows of finished tasks that may be reused."""
    recorded = _recorded(folder.path / RUN_FILE)
    reuse = resume and recorded is not None
    if reuse:
        changed = differences(recorded, fingerprint)
        if changed:
            raise ResumeError(
                f"{{option}}: {folder.path} holds rows of a weights run with a different {', '.join(changed)}",
                option="resume=True",
                hint="run without {option} to replace them, or write to another folder",
            )
    folder.remove(o for o in OUTPUTS if not (reuse and o in (MATRIX_LOG, HEADS_LOG)))
    folder.write_text(RUN_FILE, json.dumps(fingerprint, indent=2))
    if not reuse:
        return {}
    done: dict[str, list[dict]] = {}
    for name in (MATRIX_LOG, HEADS_LOG):
        done.update(RowLog(folder.path / name).done())
    return done


def _recorded(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class _Run:
    """The part of a run that does not depend on an output folder."""

    def __init__(
        self,
        options: WeightsOptions,
        backend: Backend,
        workers: int,
        address: str | None,
        memory_budget: int | None,
        show_progress: bool,
    ):
        self.options, self.backend, self.workers = options, backend, workers
        self.address, self.memory_budget, self.show_progress = address, memory_budget, show_progress

    def tables(
        self, source: TensorSource, plan: Plan, done: dict[str, list[dict]], logs: dict[TaskKind, RowLog] | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """Run the tasks not in ``done``, logging their rows; the matrix and head tables."""
        results = dict(done)
        todo = [t for t in plan.tasks if t.key not in results]
        with progress_bar("weight spectra", total=len(plan.tasks), enabled=self.show_progress) as advance:
            advance(len(plan.tasks) - len(todo))

            def on_result(task: Task, rows: list[dict]) -> None:
                results[task.key] = rows
                if logs:
                    logs[task.kind].append(task.key, rows)
                advance(1)

            execute(
                source,
                todo,
                self.options,
                on_result,
                backend=self.backend,
                workers=self.workers,
                address=self.address,
                memory_budget=self.memory_budget,
            )
        matrices = matrix_table([r for t in plan.matrix_tasks for r in results[t.key]] + plan.skipped_rows)
        heads = head_table([r for t in plan.head_tasks for r in results[t.key]]) if self.options.heads else None
        return matrices, heads
