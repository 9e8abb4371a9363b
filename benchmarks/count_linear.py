"""Run ``spectrascope study ...`` counting the multiply-adds and seconds of every ``F.linear`` call.

    python benchmarks/count_linear.py study --out /tmp/study-floor

After each stage it prints one JSON line ``{"stage", "macs", "linear_s", "wall_s"}``: the
multiply-adds of the model's (and the SAE's) linear maps, the seconds spent in them and the
wall seconds since the previous stage's tables were written (the first stage's: since
start-up). ``study_stages.py --parts floor`` runs it and sets the count against the machine's
matrix-multiply rate. The wrapper adds one clock read per linear call.
"""

from __future__ import annotations

import json
import sys
import time

import torch.nn.functional as F

from spectrascope.cli import main as cli_main
from spectrascope.study import runner

_linear = F.linear
_count = {"macs": 0, "seconds": 0.0}


def _counted_linear(x, weight, bias=None):
    start = time.perf_counter()
    out = _linear(x, weight, bias)
    _count["seconds"] += time.perf_counter() - start
    _count["macs"] += x.numel() // x.shape[-1] * weight.shape[0] * weight.shape[1]
    return out


_write = runner._write
_last = {"macs": 0, "seconds": 0.0, "clock": time.perf_counter()}


def _write_counted(out, stage, tables):
    line = {
        "stage": stage.name,
        "macs": _count["macs"] - _last["macs"],
        "linear_s": round(_count["seconds"] - _last["seconds"], 2),
        "wall_s": round(time.perf_counter() - _last["clock"], 2),
    }
    print("LINEAR " + json.dumps(line), flush=True)
    _write(out, stage, tables)
    _last.update(macs=_count["macs"], seconds=_count["seconds"], clock=time.perf_counter())


if __name__ == "__main__":
    F.linear = _counted_linear
    runner._write = _write_counted
    sys.argv = ["spectrascope", *sys.argv[1:]]
    cli_main()
