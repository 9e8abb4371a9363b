"""Freed large blocks leave the resident size once the mmap threshold is fixed (glibc)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys, numpy as np, psutil
from spectrascope.heap import return_large_frees, release_memory
if sys.argv[1] == "fixed":
    assert return_large_frees()
p = psutil.Process()
big = np.ones(2 << 20); del big            # a freed 16 MiB block raises glibc's dynamic threshold
base = p.memory_info().rss
blocks = [np.ones(1 << 19) for _ in range(100)]  # 100 x 4 MiB
keep = np.ones(10)
del blocks
print((p.memory_info().rss - base) / 2**20)
release_memory()
"""


def _retained_mib(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def test_fixed_threshold_returns_freed_blocks_that_the_default_keeps():
    assert _retained_mib("default") > 8  # glibc's dynamic threshold: 4 MiB blocks came from the heap
    assert _retained_mib("fixed") < 2
