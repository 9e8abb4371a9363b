"""Benchmark: scaling the weight analysis to LLM size (partial spectra, bounded memory, 7B).

    python benchmarks/scale.py [--parts accuracy,costs,run7b,block,extrapolate]
                               [--checkpoint DIR] [--workers 1 2] [--out DIR]

Parts (each writes OUT/<part>.json; the tables are printed at the end from whatever exists):

accuracy     partial vs exact spectra on every matrix of SmolLM2-135M (the bundled GGUF,
             dequantized to safetensors) and all-MiniLM-L6-v2, and on synthetic heavy-tailed
             matrices (planted power laws and Pareto entries). The partial spectrum is forced
             (no fallback to a full solve: max_fraction = 1) in float64; the reference is the
             exact full spectrum. Reports |alpha difference| (target: <= 0.05 on >= 95%),
             k / M, the Krylov basis size L / M, and the errors of the approximate columns.
costs        per-matrix seconds on the 7B checkpoint, single-threaded: read (bf16 -> f32),
             full spectrum fast/exact, partial spectrum fast/exact, for the shapes of one
             block and the embedding; plus the alpha of each against the exact full one.
run7b        ``spectrascope weights CKPT --fast --spectrum partial`` as a whole process,
             for each --workers value: wall time and peak RSS of the process tree
             (benchmarks/measure.py), and the row counts.
block        one block of the checkpoint (its 7 matrices, as float32) through weightwatcher's
             analyze() and through ``spectrascope weights`` (exact, fast, fast+partial), each a
             whole process, one after the other: the time ratios.
extrapolate  per-matrix cost x matrix counts for Llama-2-70B shapes (measured on one matrix of
             each 70B shape, fast full and fast partial), locally and on a Ray cluster of N
             machines.

The checkpoint is made with scripts/make_synthetic_checkpoint.py (``--make`` runs it).
Timings on a shared machine are noisy: the script prints the load average with each part.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from measure import run_measured

ROOT = HERE.parent
DEFAULT_CKPT = Path("/work/data/synth-llama2-7b")
PY = sys.executable
CLI = [PY, "-m", "spectrascope.cli"]


def load_avg() -> str:
    return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


# ----------------------------------------------------------------------------- accuracy


def synthetic_specs() -> list[dict]:
    """Seeded heavy-tailed test matrices: planted power laws and Pareto entries."""
    specs = []
    seed = 100
    for N, M in [(2048, 1024), (3072, 1024), (1536, 768)]:
        for alpha in [2.0, 2.5, 3.0, 3.5, 4.0, 5.0]:
            specs.append(
                {
                    "set": "synthetic",
                    "kind": "planted",
                    "N": N,
                    "M": M,
                    "alpha": alpha,
                    "seed": seed,
                    "name": f"planted a={alpha} {N}x{M}",
                }
            )
            seed += 1
        for mu in [2.0, 2.5, 3.0, 4.0]:
            specs.append(
                {
                    "set": "synthetic",
                    "kind": "pareto",
                    "N": N,
                    "M": M,
                    "mu": mu,
                    "seed": seed,
                    "name": f"pareto mu={mu} {N}x{M}",
                }
            )
            seed += 1
    return specs


def synthetic_matrix(spec: dict) -> np.ndarray:
    rng = np.random.default_rng(spec["seed"])
    N, M = spec["N"], spec["M"]
    if spec["kind"] == "pareto":
        return (rng.pareto(spec["mu"], (N, M)) * rng.choice([-1.0, 1.0], (N, M))).astype(np.float32)
    r = M // 8
    s = 6 * (1 + math.sqrt(M / N)) * np.arange(1, r + 1) ** (-1 / (2 * (spec["alpha"] - 1)))
    U = rng.standard_normal((N, r)) / math.sqrt(N)
    V = rng.standard_normal((M, r)) / math.sqrt(M)
    return (rng.standard_normal((N, M)) / math.sqrt(N) + (U * s) @ V.T).astype(np.float32)


def _accuracy_one(spec: dict) -> dict:
    from threadpoolctl import threadpool_limits

    from spectrascope.spectra.esd import gram_eigenvalues
    from spectrascope.spectra.metrics import spectrum_metrics
    from spectrascope.spectra.partial import PartialConfig, partial_metrics, partial_spectrum

    threadpool_limits(1)
    if spec["set"] == "synthetic":
        W = synthetic_matrix(spec)
    else:
        from spectrascope.models.open_source import open_source

        W = open_source(spec["path"]).load(spec["name"])
    N, M = max(W.shape), min(W.shape)
    t = time.perf_counter()
    full = spectrum_metrics(gram_eigenvalues(W, "exact"), N, M)
    t_full = time.perf_counter() - t
    t = time.perf_counter()
    ps = partial_spectrum(W, "exact", PartialConfig(max_fraction=1.0))
    part = partial_metrics(ps)
    t_part = time.perf_counter() - t
    out = {k: spec[k] for k in ("set", "name")}
    out.update(
        N=N,
        M=M,
        k=ps.k,
        L=ps.krylov_dim,
        t_full=t_full,
        t_partial=t_part,
        status_full=full["status"],
        status_partial=part["status"],
        approx=part["approx"],
    )
    for col in [
        "alpha",
        "xmin",
        "D",
        "num_pl_spikes",
        "log_alpha_norm",
        "erg_num",
        "erg_lambda_min",
        "erg_delta",
        "stable_rank",
        "log_norm",
        "lambda_max",
    ]:
        out[f"{col}_full"] = full[col]
        out[f"{col}_partial"] = part[col]
    return out


def part_accuracy(args) -> dict:
    from spectrascope.models.gguf_convert import convert_gguf
    from spectrascope.models.open_source import open_source
    from spectrascope.models.zoo import bundled_path
    from spectrascope.weights.options import WeightsOptions
    from spectrascope.weights.plan import plan_tasks

    specs = []
    for set_name, path in [
        ("SmolLM2-135M", convert_gguf(bundled_path("smollm2-135m"))),
        ("MiniLM-L6", bundled_path("minilm-l6")),
    ]:
        source = open_source(path)
        for task in plan_tasks(source, WeightsOptions(spectrum="full")).matrix_tasks:
            specs.append({"set": set_name, "name": task.key, "path": str(path)})
    specs += synthetic_specs()
    print(f"accuracy: {len(specs)} matrices, {load_avg()}", flush=True)
    t = time.perf_counter()
    with ProcessPoolExecutor(args.pool) as pool:
        rows = list(pool.map(_accuracy_one, specs, chunksize=1))
    print(f"accuracy: done in {time.perf_counter() - t:.0f} s", flush=True)
    return {"rows": rows}


def accuracy_tables(data: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = pd.DataFrame(data["rows"])
    ok = (df.status_full == "success") & (df.status_partial == "success")
    df = df[ok].copy()
    df["dalpha"] = (df.alpha_partial - df.alpha_full).abs()
    df["k/M"] = df.k / df.M
    df["L/M"] = df.L / df.M
    df["partial_really"] = df.k < df.M
    df["erg_num_err/M"] = (df.erg_num_partial - df.erg_num_full).abs() / df.M
    df["erg_min_err"] = (df.erg_lambda_min_partial - df.erg_lambda_min_full).abs()
    df["lan_err"] = (df.log_alpha_norm_partial - df.log_alpha_norm_full).abs()

    def summarize(g: pd.DataFrame) -> pd.Series:
        p = g[g.partial_really]
        return pd.Series(
            {
                "matrices": len(g),
                "alpha within 0.05": f"{(g.dalpha <= 0.05).mean():.1%}",
                "within 0.01": f"{(g.dalpha <= 0.01).mean():.1%}",
                "median |d alpha|": f"{g.dalpha.median():.1e}",
                "max |d alpha|": f"{g.dalpha.max():.2f}",
                "mean k/M": f"{g['k/M'].mean():.2f}",
                "mean L/M": f"{g['L/M'].mean():.2f}",
                "stopped early (k<M)": len(p),
                "  of which within 0.05": f"{(p.dalpha <= 0.05).mean():.1%}" if len(p) else "-",
                "  median ERG |d num|/M": f"{p['erg_num_err/M'].median():.3f}" if len(p) else "-",
                "  median |d log_alpha_norm|": f"{p.lan_err.median():.1e}" if len(p) else "-",
                "time full / partial (s)": f"{g.t_full.sum():.0f} / {g.t_partial.sum():.0f}",
            }
        )

    summary = pd.concat(
        [df.groupby("set").apply(summarize, include_groups=False).T, summarize(df).rename("all").to_frame()], axis=1
    )
    return df, summary


# ----------------------------------------------------------------------------- costs


def _time(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def part_costs(args) -> dict:
    from threadpoolctl import threadpool_limits

    from spectrascope.models.open_source import open_source
    from spectrascope.spectra.esd import gram_eigenvalues
    from spectrascope.spectra.metrics import spectrum_metrics
    from spectrascope.spectra.partial import PartialConfig, partial_metrics, partial_spectrum
    from spectrascope.weights.tasks import load_matrix

    threadpool_limits(1)
    source = open_source(args.checkpoint)
    names = [
        f"model.layers.0.{p}.weight"
        for p in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        )
    ]
    names.append("model.embed_tokens.weight")
    print(f"costs: {load_avg()}", flush=True)
    rows = []
    for name in names:
        W, t_read = _time(load_matrix, source, name)
        N, M = max(W.shape), min(W.shape)
        row = {"name": name, "N": N, "M": M, "read": t_read}
        for prec in ("fast", "exact"):
            eps = np.finfo(np.float64 if prec == "exact" else np.float32).eps
            ev, t_full = _time(gram_eigenvalues, W, prec)
            full = spectrum_metrics(ev, N, M, eps=eps)
            ps, t_part = _time(partial_spectrum, W, prec, PartialConfig())
            part = partial_metrics(ps, eps=eps)
            row.update(
                {
                    f"full_{prec}": t_full,
                    f"partial_{prec}": t_part,
                    f"alpha_full_{prec}": full["alpha"],
                    f"alpha_partial_{prec}": part["alpha"],
                    f"k_{prec}": ps.k,
                    f"L_{prec}": ps.krylov_dim,
                    f"kind_{prec}": ps.kind,
                }
            )
        rows.append(row)
        print(
            f"  {name}: {json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k != 'name'})}",
            flush=True,
        )
    return {"rows": rows, "load": load_avg()}


# ----------------------------------------------------------------------------- 7B run


def part_run7b(args) -> dict:
    results = []
    for workers in args.workers:
        out = Path(args.out) / f"run7b-w{workers}"
        cmd = CLI + [
            "weights",
            str(args.checkpoint),
            "--out",
            str(out),
            "--fast",
            "--spectrum",
            args.spectrum,
            "--workers",
            str(workers),
            "--quiet",
        ]
        print(f"run7b: {' '.join(cmd[2:])} ({load_avg()})", flush=True)
        m = run_measured(cmd, interval=0.25)  # a long run: sample the process tree 4x a second
        if m.returncode != 0:
            raise SystemExit(m.stdout)
        df = pd.read_parquet(out / "weights.parquet")
        results.append(
            {
                "workers": workers,
                "seconds": m.seconds,
                "peak_rss_mb": m.peak_rss_mb,
                "rows": len(df),
                "success": int((df.status == "success").sum()),
                "partial_rows": int((df.get("spectrum") == "partial").sum()),
                "mean_k": float(df["k"].mean()),
                "spectrum": args.spectrum,
                "load_after": load_avg(),
            }
        )
        print(f"  -> {results[-1]}", flush=True)
    return {"runs": results}


# ----------------------------------------------------------------------------- one block vs weightwatcher

WW_SCRIPT = """
import logging, sys
from safetensors.torch import load_file
import weightwatcher as ww
logging.getLogger("weightwatcher").setLevel(logging.ERROR)
df = ww.WeightWatcher(model=load_file(sys.argv[1])).analyze()
df.assign(name=df["name"] + ".weight").to_csv(sys.argv[2], index=False)
"""


def part_block(args) -> dict:
    from safetensors.numpy import save_file

    from spectrascope.models.open_source import open_source
    from spectrascope.weights.tasks import load_matrix

    source = open_source(args.checkpoint)
    names = [i.name for i in source.tensors() if i.name.startswith("model.layers.0.") and len(i.shape) == 2]
    tmp = Path(tempfile.mkdtemp(prefix="ss-block-"))
    save_file({n: load_matrix(source, n) for n in names}, str(tmp / "block0.safetensors"))
    (tmp / "config.json").write_text(json.dumps(source.config()))
    print(f"block: {len(names)} matrices, {load_avg()}", flush=True)
    ww = run_measured([PY, "-c", WW_SCRIPT, str(tmp / "block0.safetensors"), str(tmp / "ww.csv")], interval=0.05)
    assert ww.returncode == 0, ww.stdout
    ref = pd.read_csv(tmp / "ww.csv").set_index("name")
    rows = [
        {
            "tool": "weightwatcher analyze()",
            "seconds": ww.seconds,
            "peak_rss_mb": ww.peak_rss_mb,
            "max_abs_dalpha_vs_ww": 0.0,
        }
    ]
    print(f"  weightwatcher: {ww.seconds:.1f} s", flush=True)
    for label, flags in [
        ("spectrascope --exact", ["--exact", "--spectrum", "full"]),
        ("spectrascope --fast", ["--fast", "--spectrum", "full"]),
        ("spectrascope --fast --spectrum partial", ["--fast", "--spectrum", "partial"]),
    ]:
        out = tmp / label.replace(" ", "_").replace("-", "")
        m = run_measured(
            CLI
            + [
                "weights",
                str(tmp / "block0.safetensors"),
                "--out",
                str(out),
                "--workers",
                str(args.block_workers),
                "--quiet",
                *flags,
            ],
            interval=0.05,
        )
        assert m.returncode == 0, m.stdout
        ours = pd.read_parquet(out / "weights.parquet").set_index("name")
        common = ref.index.intersection(ours.index)
        d = (ours.loc[common, "alpha"] - ref.loc[common, "alpha"]).abs()
        rows.append(
            {"tool": label, "seconds": m.seconds, "peak_rss_mb": m.peak_rss_mb, "max_abs_dalpha_vs_ww": float(d.max())}
        )
        print(f"  {label}: {m.seconds:.1f} s", flush=True)
    for r in rows:
        r["ww_time_ratio"] = ww.seconds / r["seconds"]
    return {"rows": rows, "workers": args.block_workers}


# ----------------------------------------------------------------------------- 70B extrapolation

LLAMA2_70B = {  # (rows, cols) of each matrix kind, count per model
    "q/o 8192x8192": ((8192, 8192), 2 * 80),
    "k/v 1024x8192": ((1024, 8192), 2 * 80),
    "gate/up 28672x8192": ((28672, 8192), 2 * 80),
    "down 8192x28672": ((8192, 28672), 80),
    "embed/lm_head 32000x8192": ((32000, 8192), 2),
}
LLAMA2_7B_COUNTS = {"q/k/v/o 4096x4096": 4 * 32, "gate/up/down 11008x4096": 3 * 32, "embed/lm_head 32000x4096": 2}


def part_extrapolate(args) -> dict:
    from threadpoolctl import threadpool_limits

    from spectrascope.spectra.esd import gram_eigenvalues
    from spectrascope.spectra.metrics import spectrum_metrics
    from spectrascope.spectra.partial import PartialConfig, partial_metrics, partial_spectrum

    threadpool_limits(1)
    rows = []
    print(f"extrapolate: {load_avg()}", flush=True)
    script = _load_script()
    for kind, (shape, count) in LLAMA2_70B.items():
        if kind.startswith(("embed", "down")):
            continue  # same Gram cost class as gate/up (N x M with M = 8192): scaled below
        W = np.concatenate(list(script.generate_rows(f"70b.{kind}", shape, 0)), axis=0)
        N, M = max(shape), min(shape)
        ev, t_full = _time(gram_eigenvalues, W, "fast")
        full = spectrum_metrics(ev, N, M, eps=np.finfo(np.float32).eps)
        ps, t_part = _time(partial_spectrum, W, "fast", PartialConfig())
        part = partial_metrics(ps, eps=np.finfo(np.float32).eps)
        rows.append(
            {
                "kind": kind,
                "N": N,
                "M": M,
                "count": count,
                "full_fast_s": t_full,
                "partial_fast_s": t_part,
                "partial_kind": ps.kind,
                "k": ps.k,
                "L": ps.krylov_dim,
                "alpha_full": full["alpha"],
                "alpha_partial": part["alpha"],
            }
        )
        print(f"  {rows[-1]}", flush=True)
        del W
    by = {r["kind"]: r for r in rows}
    gu = by["gate/up 28672x8192"]
    for kind, scale in [("down 8192x28672", 1.0), ("embed/lm_head 32000x8192", 32000 / 28672)]:
        # the Gram product scales with N (M fixed at 8192), the eigensolver does not
        r = dict(gu, kind=kind, N=int(gu["N"] * scale), count=LLAMA2_70B[kind][1], estimated=True)
        r["full_fast_s"] = gu["full_fast_s"] * scale
        r["partial_fast_s"] = gu["partial_fast_s"] * scale
        rows.append(r)
    return {"rows": rows, "read_gb_per_s": args.read_gbps}


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_synthetic_checkpoint", ROOT / "scripts" / "make_synthetic_checkpoint.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_synthetic_checkpoint"] = module
    spec.loader.exec_module(module)
    return module


def extrapolation_table(data: dict, cores_per_machine: int = 32, machines=(1, 4, 16)) -> pd.DataFrame:
    rows = data["rows"]
    total_params = sum(r["N"] * r["M"] * r["count"] for r in rows)
    read_s = total_params * 2 / (data["read_gb_per_s"] * 1e9)  # bf16 bytes at the measured read rate (1 core)
    out = []
    for mode in ("full_fast_s", "partial_fast_s"):
        cpu_s = sum(r[mode] * r["count"] for r in rows) + read_s
        line = {
            "mode": mode.replace("_s", "").replace("_", " "),
            "core-hours": cpu_s / 3600,
            "this machine, 2 workers (h)": cpu_s / 2 / 3600,
        }
        for n in machines:
            # per-tensor tasks; the longest single task bounds the wall time
            longest = max(r[mode] for r in rows)
            line[f"Ray {n} x {cores_per_machine} cores (min)"] = max(cpu_s / (n * cores_per_machine), longest) / 60
        out.append(line)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="accuracy,costs,run7b,block,extrapolate")
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CKPT)
    ap.add_argument("--make", action="store_true", help="write the checkpoint first if it is missing")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--spectrum", default="partial", help="--spectrum for the 7B run")
    ap.add_argument("--block-workers", type=int, default=2)
    ap.add_argument("--pool", type=int, default=2, help="processes for the accuracy part")
    ap.add_argument(
        "--read-gbps",
        type=float,
        default=0.0,
        help="bf16 read rate for the extrapolation (default: measured in the costs part)",
    )
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "spectrascope-scale")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    parts = [p for p in args.parts.split(",") if p]
    if args.make and not args.checkpoint.exists():
        subprocess.run([PY, str(ROOT / "scripts" / "make_synthetic_checkpoint.py"), str(args.checkpoint)], check=True)
    runners = {
        "accuracy": part_accuracy,
        "costs": part_costs,
        "run7b": part_run7b,
        "block": part_block,
        "extrapolate": part_extrapolate,
    }
    for part in parts:
        if part == "extrapolate" and not args.read_gbps:
            costs = args.out / "costs.json"
            if costs.exists():
                c = json.loads(costs.read_text())["rows"]
                args.read_gbps = sum(r["N"] * r["M"] * 2 for r in c) / sum(r["read"] for r in c) / 1e9
            else:
                args.read_gbps = 0.5
        data = runners[part](args)
        (args.out / f"{part}.json").write_text(json.dumps(data, indent=1, default=float))
    report(args.out)


def report(out: Path) -> None:
    pd.set_option("display.width", 220)
    pd.set_option("display.max_columns", 30)
    if (out / "accuracy.json").exists():
        df, summary = accuracy_tables(json.loads((out / "accuracy.json").read_text()))
        print("\n== partial (forced, float64) vs exact full spectra ==")
        print(summary.to_string())
        worst = df.sort_values("dalpha", ascending=False).head(8)
        print("largest alpha differences:")
        print(
            worst[["set", "name", "M", "k", "L", "alpha_full", "alpha_partial", "num_pl_spikes_full"]].to_string(
                index=False
            )
        )
    if (out / "costs.json").exists():
        c = pd.DataFrame(json.loads((out / "costs.json").read_text())["rows"])
        print("\n== per-matrix seconds on the 7B checkpoint (1 thread) ==")
        cols = [
            "name",
            "N",
            "M",
            "read",
            "full_fast",
            "partial_fast",
            "full_exact",
            "partial_exact",
            "k_fast",
            "L_fast",
            "alpha_full_exact",
            "alpha_full_fast",
            "alpha_partial_fast",
            "alpha_partial_exact",
        ]
        print(c[cols].round(3).to_string(index=False))
    if (out / "run7b.json").exists():
        print("\n== spectrascope weights on the 7B-shaped checkpoint (13.5 GB bf16) ==")
        print(pd.DataFrame(json.loads((out / "run7b.json").read_text())["runs"]).round(1).to_string(index=False))
    if (out / "block.json").exists():
        b = json.loads((out / "block.json").read_text())
        print(f"\n== one block (7 matrices, float32) vs weightwatcher analyze(); ours with --workers {b['workers']} ==")
        t = pd.DataFrame(b["rows"])
        t["max_abs_dalpha_vs_ww"] = t["max_abs_dalpha_vs_ww"].map(lambda v: f"{v:.1e}")
        print(t.round(2).to_string(index=False))
    if (out / "extrapolate.json").exists():
        e = json.loads((out / "extrapolate.json").read_text())
        print("\n== Llama-2-70B: per-matrix seconds (fast, 1 thread) and extrapolation ==")
        print(pd.DataFrame(e["rows"]).round(2).to_string(index=False))
        print(extrapolation_table(e).round(2).to_string(index=False))


if __name__ == "__main__":
    main()
