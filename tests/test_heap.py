"""The CLI's heap policy (glibc): blocks below the threshold come from the heap and are reused
(also at the heap's top, where glibc would hand them back at once); freed ones in the middle of the
heap stay resident until the trimming thread, once the process is above its size limit, hands
them back."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys, time, numpy as np, psutil
from spectrascope.heap import LARGE_BLOCK_BYTES, TRIM_INTERVAL_S, return_large_frees, trim_periodically
assert return_large_frees()
if sys.argv[1] != "no-trim":
    limit = 0 if sys.argv[1] == "trim" else 1 << 50
    assert trim_periodically(above_bytes=limit) and trim_periodically(above_bytes=limit)  # one thread
p = psutil.Process()
base = p.memory_info().rss
blocks = [np.ones(1 << 19) for _ in range(100)]  # 100 x 4 MiB: below the threshold, from the heap
assert blocks[0].nbytes < LARGE_BLOCK_BYTES
top = np.ones(1 << 19)  # a live block above them: the heap's top cannot shrink past it
del blocks
time.sleep(4 * TRIM_INTERVAL_S)
print((p.memory_info().rss - base) / 2**20)
"""


def _retained_mib(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def test_freed_heap_blocks_leave_only_when_the_trimming_thread_finds_the_process_too_large():
    assert _retained_mib("no-trim") > 300  # 400 MiB freed below a live block: still resident
    assert _retained_mib("under-limit") > 300  # the thread runs, but the process is below its limit
    assert _retained_mib("trim") < 16  # above the limit (0 here): handed back within the interval


REUSE_SCRIPT = """
import ctypes, sys, numpy as np, psutil
from spectrascope.heap import LARGE_BLOCK_BYTES, M_MMAP_THRESHOLD, return_large_frees
if sys.argv[1] == "policy":
    assert return_large_frees()
else:  # the mmap threshold alone (glibc's trim threshold left at its 128 KiB default)
    assert ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)
p = psutil.Process()
base = p.memory_info().rss
blocks = [np.ones(1 << 19) for _ in range(50)]  # 50 x 4 MiB below the threshold, at the heap's top
del blocks
print((p.memory_info().rss - base) / 2**20)
"""


def _kept_mib(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", REUSE_SCRIPT, mode], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def test_blocks_freed_at_the_heaps_top_stay_for_reuse():
    """Kept resident (so the next allocation of the same size takes them without page faults),
    not handed back at once: measured by the resident size, which page sizes do not change."""
    assert _kept_mib("mmap-threshold-only") < 50  # 200 MiB freed at the top: handed back
    assert _kept_mib("policy") > 150  # kept for reuse
