"""Run a command as a subprocess; report wall time and the peak RSS of its whole process tree.
Also the best wall time of an in-process call."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

import psutil


@dataclass
class Measurement:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str


def run_measured(cmd: list[str], env: dict | None = None, interval: float = 0.02) -> Measurement:
    """Wall time and peak summed RSS (parent + all descendants), sampled every ``interval`` s."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(interval)
    out = proc.stdout.read()
    return Measurement(time.perf_counter() - start, peak / 2**20, proc.returncode, out)


def best_seconds(fn, repeats: int = 5) -> float:
    """The shortest wall time of ``repeats`` calls of ``fn()`` (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
