"""The default study on a GPU, one stage at a time, timed; its tables for compare_studies.py.

    python benchmarks/study_on_gpu.py OUT [--stdlib DIR] [--device cuda] [--stages weights,...]

Each stage runs as ``run_study(..., stages=[stage], resume=True, device=...)``, so a stage that
fails prints its traceback and the others still run (a later stage that reads a failed one's
tables is refused in one line). Prints each stage's seconds and the GPU's peak memory.

The ``code`` and ``python-docs`` corpora are read from the running interpreter's standard
library; to compare with a study made under another Python version, ``--stdlib DIR`` reads them
from DIR instead (the modules of ``spectrascope.corpora.stdlib_code.MODULES`` and
``pydoc_data/topics.py``, copied from the other interpreter). That is how the README's H200
numbers were taken: this machine's 3.11 files on the GPU machine's 3.12, then
``python benchmarks/compare_studies.py GPU_OUT CPU_OUT``.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from spectrascope.study.stages.registry import DEFAULT_STAGE_NAMES


def read_corpora_from(stdlib: Path) -> None:
    """Point the code and python-docs corpora at another interpreter's copied files."""
    sys.path.insert(0, str(stdlib))
    import pydoc_data.topics

    from spectrascope.corpora import stdlib_code

    if not str(pydoc_data.topics.__file__).startswith(str(stdlib)):
        raise SystemExit(f"pydoc_data was imported from {pydoc_data.topics.__file__}, not {stdlib}")
    stdlib_code.stdlib_dir = lambda: stdlib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--stdlib", type=Path, default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--stages", default=",".join(DEFAULT_STAGE_NAMES))
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    if args.stdlib is not None:
        read_corpora_from(args.stdlib.resolve())
    import torch

    from spectrascope.study import StudyBudget, run_study

    on_gpu = torch.device(args.device).type == "cuda"
    for stage in args.stages.split(","):
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        try:
            run_study(
                "smollm2-135m",
                args.out,
                workers=args.workers,
                resume=True,
                stages=[stage],
                budget=StudyBudget(),
                device=args.device,
            )
        except Exception:  # noqa: BLE001 - a check harness: report any stage's failure and go on
            print(f"{stage}: failed after {time.perf_counter() - start:.1f} s\n{traceback.format_exc()}", flush=True)
            continue
        peak = f", GPU peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if on_gpu else ""
        print(f"{stage}: {time.perf_counter() - start:.1f} s{peak}", flush=True)


if __name__ == "__main__":
    main()
