"""The Ray backend: weight-analysis tasks on a Ray cluster (``--backend ray``; ``pip install spectrascope[ray]``).

Each task (one matrix, or one block's heads) is a Ray task with ``num_cpus=1`` that receives
the picklable :class:`SourceSpec` of the model (file paths, config) and reopens the source
itself: workers read their tensors from the path they are given, so the model files must
be visible at the same path on every node (a shared or replicated file system). The driver
waits on the tasks and hands each result to ``on_result`` as it arrives, so the row log is
written exactly as by the local backend and ``--resume`` works the same way.

Each task declares its estimated working set (``memory=``, tasks.task_bytes) so a node
runs only as many tasks at once as its memory holds.

A worker process that dies (killed, out of memory, node lost) is retried by Ray: the remote
function has ``max_retries`` (default 3), so its tensor is computed again, not lost. An
exception raised inside a task (a bug, not a death) is not retried and stops the run.

Each task limits its BLAS to one thread, like the local backend's workers, so every row is
bit-for-bit the row of a local run.

Cluster: ``address=None`` starts a local Ray instance with ``num_cpus=workers`` (and shuts
it down at the end); ``address="auto"`` (or ``"ray://host:10001"``, ``"host:6379"``) joins an
existing cluster and uses all of it.

Test hook: if the environment variable ``SPECTRASCOPE_RAY_CRASH_ONCE`` is ``KEY@FLAGFILE``,
the worker that runs the task named KEY kills its own process (``os._exit``) the first time
(when FLAGFILE does not exist yet, creating it), to exercise the retry path.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ...errors import InputError, OptionError, SpectrascopeError
from ...models.tensor_source import SourceSpec, TensorSource
from ..options import Device, WeightsOptions
from ..plan import Task
from ..tasks import failed_rows, run_task, task_bytes

CRASH_ENV = "SPECTRASCOPE_RAY_CRASH_ONCE"
DEFAULT_MAX_RETRIES = 3
INSTALL_HINT = "{option} ray needs Ray, which is not installed: pip install 'spectrascope[ray]'"


OnResult = Callable[[Task, list[dict]], None]


def import_ray():
    """The ``ray`` module, or one clear OptionError telling how to install it."""
    try:
        import ray
    except ImportError:
        raise OptionError(INSTALL_HINT, option="backend") from None
    return ray


def _maybe_crash(key: str) -> None:
    spec = os.environ.get(CRASH_ENV, "")
    if not spec or "@" not in spec:
        return
    target, flag = spec.split("@", 1)
    if target == key and not os.path.exists(flag):
        with open(flag, "w") as fh:
            fh.write(str(os.getpid()))
        os._exit(1)  # a hard death, as if the node killed the worker


def run_remote_task(spec: SourceSpec, task: Task, options: WeightsOptions, device: Device = Device.CPU) -> list[dict]:
    """The body of a Ray task: single-threaded BLAS, reopen the source from its spec, run."""
    from threadpoolctl import threadpool_limits

    _maybe_crash(task.key)
    with threadpool_limits(1):
        return run_task(spec, task, options, device)


def execute_ray(
    source: TensorSource,
    tasks: list[Task],
    options: WeightsOptions,
    on_result: OnResult,
    workers: int = 1,
    address: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> None:
    """Run ``tasks`` as Ray tasks; call ``on_result(task, rows)`` in the driver as each ends.

    Args:
        source: a file-backed source (its ``spec()`` is sent to the workers).
        workers: CPUs of the local Ray instance started when ``address`` is None.
        address: an existing cluster ("auto", "host:port", "ray://..."), or None.
        max_retries: how often a task whose worker died is run again.
    Raises:
        OptionError: Ray missing. InputError: an in-memory source (no path for the workers).
    """
    spec = source.spec()
    if spec is None:
        raise InputError("the ray backend needs a model on disk (a path): workers read tensors from files")
    ray = import_ray()
    if not tasks:
        return
    device = Device.CUDA if options.device is Device.CUDA else Device.CPU
    started = False
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in (CRASH_ENV,) if k in os.environ}
        kwargs = {"runtime_env": {"env_vars": env}} if env else {}
        if address:
            ray.init(address=address, log_to_driver=False, **kwargs)
        else:
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False, **kwargs)
        started = True
    try:
        remote = ray.remote(
            num_cpus=1, num_gpus=1 if device is Device.CUDA else 0, max_retries=max_retries, retry_exceptions=False
        )(run_remote_task)
        spec_ref = ray.put(spec)
        options_ref = ray.put(options)
        # each task declares its working set, so Ray does not pack more tasks on a node than
        # its memory holds (the local engine's memory budget, per node)
        pending = {
            remote.options(memory=task_bytes(task, options)).remote(spec_ref, task, options_ref, device): task
            for task in tasks
        }
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    rows = ray.get(ref)
                except _death_errors(ray) as err:  # the worker died max_retries + 1 times
                    rows = failed_rows(task, f"ray worker died {max_retries + 1} times ({type(err).__name__})")
                except Exception as err:  # noqa: BLE001 - raised inside the task: a user error or a bug, as in a local run
                    cause = getattr(err, "cause", None)
                    if isinstance(cause, SpectrascopeError):
                        raise cause from None
                    raise RuntimeError(f"ray task for {task.key} failed: {type(err).__name__}: {err}") from None
                on_result(task, rows)
    finally:
        if started:
            ray.shutdown()


def _death_errors(ray) -> tuple[type, ...]:
    names = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "TaskUnschedulableError")
    return tuple(getattr(ray.exceptions, n) for n in names if hasattr(ray.exceptions, n))
