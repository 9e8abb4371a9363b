"""The process heap: keep freed memory for reuse, and give it back when the process grows large (glibc; no-op elsewhere).

A long run allocates and frees tensors of a few to hundreds of MB (activations, attention
weights, logits, moments). glibc serves an allocation of at least ``M_MMAP_THRESHOLD`` bytes
with its own ``mmap`` and unmaps it on free; every such block is paid for again in page faults
(the kernel maps and zeroes it page by page) when the next one is allocated. Smaller blocks
come from the heap and are reused without faults, but a freed block in the middle of the heap
stays in the resident size until ``malloc_trim`` hands its pages back.

The policy (:func:`return_large_frees` and :func:`trim_periodically`, both called by the CLI):
blocks below :data:`LARGE_BLOCK_BYTES` (256 MiB: a layer's activations, a chunk of logits)
come from the heap and are reused; glibc does not shrink the heap's top on its own (its trim
threshold is set to :data:`KEEP_TOP_BYTES`), and a daemon thread looks at the resident size
every :data:`TRIM_INTERVAL_S` and calls ``malloc_trim`` when it is above :data:`TRIM_ABOVE_BYTES`.

Measured on SmolLM2 (one domain's activation pass of 4,608 tokens, and the exact ablations of
one domain, each in its own process): a fixed 1 MiB threshold (this module's earlier policy)
spent 16 s of system time on page faults and took 23.6 s for the pass (15.5 s with glibc's
default) and 55 s for the ablations (41.5 s). glibc's default (its threshold rises to 32 MiB)
kept up to 4.8 GB resident through a default study. Whole default studies on SmolLM2 (2 idle
cores, the converted model cached; stages' seconds, peak resident by ``/usr/bin/time -v``): a
fixed 32 MiB threshold without trimming 845.6 s and 3.78 GB; with ``malloc_trim`` every second
whatever the size 879.0 s and 2.48 GB (the bridge's reuse of its logits lost); the 256 MiB
threshold with the thread 834.2 s and 2.44 GB (96 s of system time against 229 s for the 1 MiB
policy's 962 s in a fresh clone).

Fixing the mmap threshold also fixes glibc's trim threshold (otherwise twice the threshold) at
its 128 KiB default: every free at the heap's top gave its pages back, and the next forward
faulted them in again. A forward of SmolLM2's layers 15-29 on 4,096 tokens (each policy in its
own process, three alternations, each process's best of three): 2.11-2.44 s with the threshold
at 128 KiB (0.50-1.11 s of system time per forward), 1.81-2.01 s with it at 1 GiB (0.04-0.21 s).
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time

M_TRIM_THRESHOLD = -1
"""glibc's ``mallopt`` parameter number of the trim threshold (free bytes at the heap's top that
make ``free`` shrink the heap)."""

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number of the mmap threshold."""

LARGE_BLOCK_BYTES = 256 << 20
"""Blocks of at least this size are mapped and unmapped on their own (256 MiB)."""

TRIM_INTERVAL_S = 0.25
"""Seconds between two looks at the resident size by :func:`trim_periodically`."""

KEEP_TOP_BYTES = 1 << 30
"""Free bytes at the heap's top that glibc keeps before it shrinks the heap itself (1 GiB;
``mallopt`` takes a C int)."""

TRIM_ABOVE_BYTES = 2 << 30
"""Resident size above which :func:`trim_periodically` gives freed heap pages back (2 GiB)."""

_trimmer: threading.Thread | None = None


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def return_large_frees(threshold: int = LARGE_BLOCK_BYTES, keep_top: int = KEEP_TOP_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes and its trim threshold at ``keep_top``
    bytes for this process (True if both are set): blocks below ``threshold`` come from the heap,
    and freed ones at its top stay for reuse until ``keep_top`` bytes are free there (or
    :func:`trim_periodically` finds the process large).

    Called once by the CLI; a library caller decides for its own process."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    mapped = bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    return mapped and bool(libc.mallopt(M_TRIM_THRESHOLD, int(keep_top)))


def resident_bytes() -> int:
    """This process's resident size in bytes (Linux ``/proc/self/statm``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def trim_periodically(interval_s: float = TRIM_INTERVAL_S, above_bytes: int = TRIM_ABOVE_BYTES) -> bool:
    """Start (once per process) a daemon thread that, every ``interval_s`` seconds, gives freed
    heap pages back to the system (glibc's ``malloc_trim``) when the resident size is above
    ``above_bytes`` (True if running).

    Below that size freed blocks stay for reuse (no page faults); above it they leave within
    ``interval_s``. ``malloc_trim`` takes the allocator's lock and releases the GIL (a ctypes
    call). Called once by the CLI; a library caller decides for its own process."""
    global _trimmer
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    if _trimmer is None or not _trimmer.is_alive():

        def trim() -> None:
            while True:
                time.sleep(interval_s)
                if resident_bytes() > above_bytes:
                    libc.malloc_trim(0)

        _trimmer = threading.Thread(target=trim, name="spectrascope-heap-trim", daemon=True)
        _trimmer.start()
    return True


def release_memory() -> None:
    """Garbage collection, then glibc's ``malloc_trim``: freed heap back to the system (between
    the stages of a long run)."""
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
