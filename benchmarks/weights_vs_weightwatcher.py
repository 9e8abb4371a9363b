"""Benchmark: `spectrascope weights` vs weightwatcher's analyze() on SmolLM2-135M.

Both read the same float32 safetensors file (the GGUF dequantized once into the cache).
Each tool runs as a whole process (interpreter start-up and imports included), one after the
other in this script; the script prints the time ratio, each one's peak RSS (process tree),
the largest alpha difference per mode, and the "floor": Gram matrix + symmetric eigensolver
of every analyzed matrix, two single-threaded processes, nothing else.

    python benchmarks/weights_vs_weightwatcher.py [--model smollm2-135m] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from measure import run_measured

WW_SCRIPT = """
import logging, sys, time
from safetensors.torch import load_file
import weightwatcher as ww
logging.getLogger("weightwatcher").setLevel(logging.ERROR)
df = ww.WeightWatcher(model=load_file(sys.argv[1])).analyze()
df.assign(name=df["name"] + ".weight").to_csv(sys.argv[2], index=False)
"""

FLOOR_SCRIPT = """
import sys, numpy as np, pandas as pd, scipy.linalg
from concurrent.futures import ProcessPoolExecutor
from safetensors import safe_open
def init():
    from threadpoolctl import threadpool_limits; threadpool_limits(1)
def one(args):
    path, name, dtype = args
    with safe_open(path, "np") as f: W = f.get_tensor(name).astype(dtype)
    A = W if W.shape[0] >= W.shape[1] else W.T
    return scipy.linalg.eigvalsh(A.T @ A, driver="evd", check_finite=False, overwrite_a=True).max()
names = pd.read_csv(sys.argv[2])["name"]
dtype = np.float64 if sys.argv[3] == "exact" else np.float32
with ProcessPoolExecutor(int(sys.argv[4]), initializer=init) as pool:
    list(pool.map(one, [(sys.argv[1], n, dtype) for n in names]))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from spectrascope.models.gguf_convert import convert_gguf
    from spectrascope.models.zoo import bundled_path

    st_dir = convert_gguf(bundled_path(args.model))
    st_file = st_dir / "model.safetensors"
    tmp = Path(tempfile.mkdtemp(prefix="ss-bench-"))
    py = sys.executable
    cli = [py, "-m", "spectrascope.cli"]

    ww = run_measured([py, "-c", WW_SCRIPT, str(st_file), str(tmp / "ww.csv")])
    assert ww.returncode == 0, ww.stdout
    ref = pd.read_csv(tmp / "ww.csv").set_index("name")
    results = {"weightwatcher": ww}
    rows = []
    for mode in ("exact", "fast"):
        out = tmp / mode
        m = run_measured(
            cli + ["weights", str(st_dir), "--out", str(out), f"--{mode}", "--workers", str(args.workers), "--quiet"]
        )
        assert m.returncode == 0, m.stdout
        ours = pd.read_parquet(out / "weights.parquet").set_index("name")
        ours = ours[ours["status"] == "success"]
        common = ref.index.intersection(ours.index)
        diff = np.abs(ours.loc[common, "alpha"] - ref.loc[common, "alpha"])
        floor = run_measured([py, "-c", FLOOR_SCRIPT, str(st_file), str(tmp / "ww.csv"), mode, str(args.workers)])
        startup = run_measured([py, "-c", "import spectrascope.cli, spectrascope.weights.runner"])
        results[mode] = m
        rows.append(
            {
                "mode": mode,
                "matrices": len(ours),
                "same_set": set(common) == set(ref.index) == set(ours.index),
                "seconds": m.seconds,
                "ww_seconds": ww.seconds,
                "speedup_vs_ww": ww.seconds / m.seconds,
                "floor_seconds": floor.seconds,
                "startup_seconds": startup.seconds,
                "vs_floor_plus_startup": m.seconds / (floor.seconds + startup.seconds),
                "peak_rss_mb": m.peak_rss_mb,
                "ww_peak_rss_mb": ww.peak_rss_mb,
                "max_abs_alpha_diff": float(diff.max()),
                "share_alpha_within_0.01": float((diff <= 0.01).mean()),
            }
        )
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(f"model: {args.model} ({len(ref)} matrices analyzed by weightwatcher), workers={args.workers}")
    print(table.T.to_string(header=False))
    (tmp / "result.json").write_text(json.dumps(rows, indent=2))
    print(f"details in {tmp}")


if __name__ == "__main__":
    main()
