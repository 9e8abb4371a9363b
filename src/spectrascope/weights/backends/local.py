"""The local backend: tasks in a pool of worker processes on this machine (or in process).

Parallelism: ``workers`` processes (fork), each with single-threaded BLAS, each holding at
most one tensor (or, for head tasks, one block's q/k/v/o) at a time. File-backed sources are
reopened in each worker from their picklable spec; in-memory sources run in-process. Two
single-threaded processes beat one two-threaded process on matrices of this size.

Memory: the driver admits a task only while the estimated working sets of the tasks in
flight (:func:`~spectrascope.weights.tasks.task_bytes`) fit in ``memory_budget`` bytes (one
task always runs), so the peak is about (workers + 1) x the interpreter's own footprint plus
the budget, whatever the worker count.

Interrupts: if anything ends the driver's loop early (Ctrl-C, SIGTERM, an error), the workers
are killed before the exception goes on; a worker dies by itself when the driver is killed
(:mod:`spectrascope.interrupts`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from ...interrupts import signals_held, worker_setup
from ...models.tensor_source import TensorSource
from ..options import Device, WeightsOptions
from ..plan import Task
from ..tasks import clear_worker_sources, run_task, task_bytes

DEFAULT_MEMORY_BUDGET = 2 * 2**30
"""Default bytes of tensor working sets in flight at once."""
QUEUE_PER_WORKER = 2
"""Tasks submitted per worker ahead of time (a little queue keeps the workers busy)."""

OnResult = Callable[[Task, list[dict]], None]


def _worker_init(parent_pid: int) -> None:
    import sys

    from threadpoolctl import threadpool_limits

    worker_setup(parent_pid)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    threadpool_limits(1)
    clear_worker_sources()


def execute_local(
    source: TensorSource,
    tasks: list[Task],
    options: WeightsOptions,
    on_result: OnResult,
    workers: int = 1,
    memory_budget: int | None = None,
    device: Device = Device.CPU,
) -> None:
    """Run ``tasks``, calling ``on_result(task, rows)`` in the driver as each ends (in
    completion order): in process when there is one worker, one task, or no spec to reopen
    the source from; else in a pool of ``workers`` processes within ``memory_budget`` bytes."""
    spec = source.spec()
    if workers <= 1 or spec is None or len(tasks) <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # multi-threaded BLAS is slower on matrices of this size
            for task in tasks:
                on_result(task, run_task(source, task, options, device))
        return
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    queue = list(tasks)
    futures: dict[Future, tuple[Task, int]] = {}
    in_flight = 0

    def admit() -> None:
        nonlocal in_flight
        while queue and len(futures) < QUEUE_PER_WORKER * workers:
            need = task_bytes(queue[0], options)
            if futures and in_flight + need > budget:
                return
            task = queue.pop(0)
            futures[pool.submit(run_task, spec, task, options, device)] = (task, need)
            in_flight += need

    with signals_held():  # the first submit forks the workers: a signal waits until they exist
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
        )
        try:
            admit()
        except BaseException:
            stop_pool(pool)
            raise
    try:
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                task, need = futures.pop(future)
                in_flight -= need
                on_result(task, future.result())
            admit()
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown()


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's workers now (the tasks they run are lost) and reap them."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before Python 3.14
    for process in processes:
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)
