"""Interrupts: Ctrl-C and SIGTERM end a run cleanly, and worker processes never outlive it.

- :func:`raise_on_signals` (the CLI wraps every command in it): SIGINT and SIGTERM raise
  :class:`Interrupted` in the main thread, a ``BaseException`` that ``except Exception``
  clauses let through (and that typer, unlike KeyboardInterrupt, does not turn into an exit
  code); the CLI prints ``interrupted`` and exits 130.
- :func:`signals_held` around the fork of worker processes: a signal that arrives meanwhile
  waits until the workers exist (so the parent can end them), and the workers start with
  the signals blocked until :func:`worker_setup` has installed theirs.
- :func:`worker_setup` in each worker: Ctrl-C ignored (a terminal sends it to the whole
  process group; the parent decides), SIGTERM ends it, and it dies with its parent, even
  when the parent is killed with SIGKILL (``prctl(PR_SET_PDEATHSIG)`` on Linux, a thread
  that watches the parent's pid elsewhere).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = 130
"""Exit code of an interrupted command (128 + SIGINT, what shells report for Ctrl-C)."""
PR_SET_PDEATHSIG = 1
PARENT_POLL_SECONDS = 0.5


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; the run is being ended."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def raise_on_signals() -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (elsewhere a no-op)."""
    if not _in_main_thread():
        yield
        return

    def handler(signum: int, frame) -> None:
        raise Interrupted(signum)

    previous = {s: signal.getsignal(s) for s in INTERRUPT_SIGNALS}
    for s in INTERRUPT_SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def signals_held() -> Iterator[None]:
    """Within: SIGINT and SIGTERM are blocked in this thread and delivered when it ends;
    processes forked within inherit the block (:func:`worker_setup` lifts it)."""
    if not hasattr(signal, "pthread_sigmask") or not _in_main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPT_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_setup(parent_pid: int) -> None:
    """Signal handling of a worker process (call first thing in the worker).

    Args:
        parent_pid: the pid of the process that started the worker; when it is gone, the
            worker exits.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent_pid)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPT_SIGNALS)


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit when ``parent_pid`` (its parent) is gone."""
    if not _parent_death_signal():
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the watch was set up
        os._exit(1)


def _parent_death_signal() -> bool:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills this process when its parent
    thread ends (Linux only; True when set)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)
