"""Where the tasks of a weight analysis run: a local process pool, the GPU, or a Ray cluster.

Every backend takes the runner's tasks (:class:`~spectrascope.weights.plan.Task`) and calls
``on_result(task, rows)`` in the driver as each ends; the rows come from
:func:`~spectrascope.weights.tasks.run_task` wherever it runs, so every backend gives the same
table. Backends import the task layer; nothing below the runner imports a backend.
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import OptionError, choice
from ...models.tensor_source import TensorSource
from ..options import Backend, Device, WeightsOptions, cuda_available
from ..plan import Task

OnResult = Callable[[Task, list[dict]], None]


def check_backend(backend: Backend | str, options: WeightsOptions) -> Backend:
    """The backend as a :class:`Backend`, checked before any work: Ray installed for "ray",
    a CUDA device present for ``device="cuda"`` on this machine.

    Raises:
        OptionError: an unknown backend, Ray missing, or CUDA asked for and absent.
    """
    chosen = choice(Backend, backend, "backend")
    if chosen is Backend.RAY:
        from .ray_cluster import import_ray

        import_ray()
    elif options.device is Device.CUDA and not cuda_available():
        raise OptionError("{option} cuda: no CUDA device is available here (use cpu or auto)", option="device")
    return chosen


def execute(
    source: TensorSource,
    tasks: list[Task],
    options: WeightsOptions,
    on_result: OnResult,
    *,
    backend: Backend = Backend.LOCAL,
    workers: int = 1,
    address: str | None = None,
    memory_budget: int | None = None,
) -> None:
    """Run ``tasks`` on ``backend``, calling ``on_result(task, rows)`` as each ends.

    Args:
        workers: worker processes (local) or CPUs of a Ray instance started here (ray).
        address: Ray cluster address ("auto" for a running one; None starts a local one).
        memory_budget: bytes of task working sets admitted at once (local; default 2 GiB).
    """
    if backend is Backend.RAY:
        from .ray_cluster import execute_ray

        execute_ray(source, tasks, options, on_result, workers=workers, address=address)
        return
    device = options.resolved_device()
    if device is Device.CUDA:
        from .gpu import execute_batched

        execute_batched(source, tasks, options, on_result, torch_device="cuda")
        return
    from .local import execute_local

    execute_local(source, tasks, options, on_result, workers=workers, memory_budget=memory_budget, device=device)
