"""Track spectra (and optionally mechanisms) over a series of training checkpoints.

Per checkpoint, in step order, :func:`track` computes the weight table of the weights engine
(:func:`spectrascope.weights.runner.run_weights`: alpha, alpha_weighted, the ERG gap
``erg_delta``, stable rank, entropy, with ``mp_fit`` the Marchenko-Pastur spikes
``num_spikes``, with ``randomize`` the correlation traps ``num_traps``) and, on request,
per-head QK/OV spectra, head scores, activation spectra on a fixed corpus and a user metric.

Cost: every 2-D tensor is hashed first (:mod:`.digest`); a tensor whose content (name and
digest) was analyzed at an earlier checkpoint is not recomputed: its row is copied
(``reused`` True). Tracking N checkpoints costs at most N weights runs plus the hashing.
Within a checkpoint the engine runs ``workers`` processes with its bounded memory budget;
checkpoints run one after the other, so memory is that of one weights run.

Results are written as they go: each finished checkpoint's tables go to
``OUT/steps/<label>.<table>.parquet`` (written to a temporary name, then renamed), and for
a large checkpoint (:data:`WORK_LOG_MIN_BYTES`) the engine's row log of the checkpoint in
progress to ``OUT/work/<label>/``; ``resume=True`` skips finished checkpoints and resumes
the one in progress (tensor by tensor when it is large). At the end
the tables over all steps are written to OUT (Parquet + CSV).

A checkpoint that is missing or cannot be opened fails its own rows (status 'failed' with
the reason, one row per matrix of the series' architecture); the others are kept. A
tensor that cannot be read fails its row. Mixed architectures are one clear error.

Tables (each with ``step`` first):
    weights_over_steps      step, checkpoint, then the weights table's columns, digest, reused
    heads_over_steps        step, checkpoint, block, head, kv_head, circuit, metrics, digest, reused
    head_scores_over_steps  step, layer, head, induction, previous_token, duplicate_token
    activations_over_steps  step, then the activations table's columns
    metrics_over_steps      step, then the user metric's values
    checkpoint_status       step, path, status ('ok' | 'partial' | 'failed'), reason,
                            computed, reused (matrix rows), seconds
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SpectrascopeError
from ..models.open_source import open_source
from ..models.roles import tensor_role
from ..progress import progress_bar
from ..tables import write_table
from ..weights.options import WeightsOptions
from ..weights.runner import run_weights
from .digest import TensorDigests
from .series import (
    Checkpoint,
    check_same_architecture,
    checkpoint_series,
    matrix_signature,
)
from .sources import SubsetSource

TRACK_FILE = "track.json"
STEP_LEAD = ["step", "checkpoint"]
LEAD_COLUMNS = ["name", "block", "role", "N", "M", "Q"]
HEAD_PROJECTIONS = {"q", "k", "v", "o", "qkv"}
WORK_LOG_MIN_BYTES = 64 * 2**20
"""Checkpoints whose tensors to analyze hold at least this many float32 bytes resume tensor
by tensor (the engine's row log); smaller ones are recomputed whole after an interruption."""
_INTEGER_DTYPES = ("int", "uint", "bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")
UserMetric = Callable[[Any], "float | Mapping[str, float]"]


@dataclass
class TrackResult:
    """The tables of a tracking run (see the module docstring); None when not requested."""

    weights: pd.DataFrame
    checkpoints: pd.DataFrame
    heads: pd.DataFrame | None = None
    scores: pd.DataFrame | None = None
    activations: pd.DataFrame | None = None
    metrics: pd.DataFrame | None = None
    out: Path | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        """stem -> table, for the tables that exist."""
        named = {
            "weights_over_steps": self.weights,
            "heads_over_steps": self.heads,
            "head_scores_over_steps": self.scores,
            "activations_over_steps": self.activations,
            "metrics_over_steps": self.metrics,
            "checkpoint_status": self.checkpoints,
        }
        return {k: v for k, v in named.items() if v is not None}


@dataclass
class _Cache:
    """Rows already computed, by content: (name, digest) -> matrix row; (block, digests) -> head rows."""

    matrices: dict[tuple[str, str], dict] = field(default_factory=dict)
    heads: dict[tuple[int, str], list[dict]] = field(default_factory=dict)

    def learn(self, weights: pd.DataFrame | None, heads: pd.DataFrame | None) -> None:
        if weights is not None and len(weights):
            for row in weights.to_dict("records"):
                if isinstance(row.get("digest"), str) and row.get("status") != "failed":
                    self.matrices[(row["name"], row["digest"])] = _strip(row)
        if heads is not None and len(heads):
            for (block, digest), group in heads.groupby(["block", "digest"]):
                if not (group["status"] == "failed").any():
                    self.heads[(int(block), str(digest))] = [_strip(r) for r in group.to_dict("records")]


def _strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("step", "checkpoint", "digest", "reused")}


def _natural(name: str) -> tuple:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name))


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write atomically: a reader never sees a half-written table."""
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _with_lead(df: pd.DataFrame, cp: Checkpoint) -> pd.DataFrame:
    df = df.copy()
    df.insert(0, "step", cp.step)
    df.insert(1, "checkpoint", str(cp.path))
    return df


def _options_fingerprint(options: WeightsOptions, extras: dict) -> dict:
    return {**{k: v for k, v in options.to_dict().items() if k != "device"}, **extras}


class _Tracker:
    """State of one tracking run: options, output folder, content cache."""

    def __init__(
        self,
        options: WeightsOptions,
        heads: bool,
        out: Path | None,
        workers: int,
        memory_budget: int | None,
        allow_pickle: bool,
    ):
        self.options, self.heads, self.out, self.workers = options, heads, out, workers
        self.memory_budget, self.allow_pickle = memory_budget, allow_pickle
        self.cache = _Cache()

    # ------------------------------------------------------------------ per-step files
    def step_file(self, cp: Checkpoint, table: str) -> Path | None:
        return None if self.out is None else self.out / "steps" / f"{cp.label}.{table}.parquet"

    def load_done(self, cp: Checkpoint, table: str) -> pd.DataFrame | None:
        path = self.step_file(cp, table)
        return pd.read_parquet(path) if path is not None and path.exists() else None

    def save(self, cp: Checkpoint, table: str, df: pd.DataFrame) -> None:
        path = self.step_file(cp, table)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_parquet(df, path)

    def work_dir(self, cp: Checkpoint, part: str, source, names: list[str]) -> Path | None:
        """The engine's row-log folder for this checkpoint, when resuming inside it pays: None
        without OUT or when the tensors to analyze are small (a rerun then costs less than
        the engine's own tables and summary, which it writes for every checkpoint)."""
        if self.out is None:
            return None
        wanted = set(names)
        size = sum(4 * int(np.prod(info.shape)) for info in source.tensors() if info.name in wanted)
        return self.out / "work" / cp.label / part if size >= WORK_LOG_MIN_BYTES else None

    # ------------------------------------------------------------------ weights
    def matrices(self, cp: Checkpoint, source, digests: dict[str, str | None]) -> pd.DataFrame:
        """The weight table of one checkpoint, copying rows of unchanged tensors."""
        reused, todo = {}, []
        for name, digest in digests.items():
            hit = self.cache.matrices.get((name, digest)) if digest else None
            if hit is not None:
                reused[name] = hit
            else:
                todo.append(name)
        rows = [{**row, "digest": digests[name], "reused": True} for name, row in reused.items()]
        if todo:
            computed, _ = run_weights(
                SubsetSource(source, todo),
                self.options,
                self.work_dir(cp, "matrices", source, todo),
                self.workers,
                resume=True,
                memory_budget=self.memory_budget,
            )
            for row in computed.to_dict("records"):
                rows.append({**row, "digest": digests.get(row["name"]), "reused": False})
        table = pd.DataFrame(rows)
        table = table.iloc[sorted(range(len(table)), key=lambda i: _natural(table["name"].iat[i]))]
        return _with_lead(table[LEAD_COLUMNS + [c for c in table.columns if c not in LEAD_COLUMNS]], cp)

    def head_table(self, cp: Checkpoint, source, digests: dict[str, str | None]) -> pd.DataFrame:
        """Per-head spectra of one checkpoint, copying blocks whose projections are unchanged."""
        config = source.config()
        by_block: dict[int, list[str]] = {}
        for name in digests:
            block, role = tensor_role(name, config)
            if role in HEAD_PROJECTIONS and block >= 0:
                by_block.setdefault(block, []).append(name)
        rows, todo, block_digest = [], [], {}
        for block, names in sorted(by_block.items()):
            parts = [digests[n] for n in sorted(names)]
            key = "+".join(p for p in parts if p) if all(parts) else None
            block_digest[block] = key
            hit = self.cache.heads.get((block, key)) if key else None
            if hit is not None:
                rows += [{**r, "digest": key, "reused": True} for r in hit]
            else:
                todo += names
        if todo:
            options = WeightsOptions(
                precision=self.options.precision, heads=True, matrices=False, seed=self.options.seed
            )
            # no row log here: run_weights cannot write the summary of a heads-only run to a folder
            _, heads = run_weights(
                SubsetSource(source, todo), options, None, self.workers, memory_budget=self.memory_budget
            )
            for row in heads.to_dict("records") if heads is not None else []:
                rows.append({**row, "digest": block_digest.get(int(row["block"])), "reused": False})
        table = pd.DataFrame(rows)
        if len(table):
            table = table.sort_values(["block", "circuit", "head"], kind="stable").reset_index(drop=True)
        return _with_lead(table, cp)

    def failed_rows(self, cp: Checkpoint, reason: str, reference: pd.DataFrame | None) -> pd.DataFrame:
        """One failed row per matrix of the series' architecture (or one row if none is known)."""
        if reference is not None and len(reference):
            lead = reference[LEAD_COLUMNS].drop_duplicates("name").copy()
        else:
            lead = pd.DataFrame(
                {"name": [""], "block": [-1], "role": [""], "N": [np.nan], "M": [np.nan], "Q": [np.nan]}
            )
        lead["status"], lead["reason"], lead["digest"], lead["reused"] = "failed", reason, None, False
        return _with_lead(lead.reset_index(drop=True), cp)


def _prepare_out(out: Path, fingerprint: dict, resume: bool) -> None:
    record = out / TRACK_FILE
    if resume and record.exists():
        logged = json.loads(record.read_text()).get("options", {})
        if logged != fingerprint:
            changed = sorted(k for k in set(logged) | set(fingerprint) if logged.get(k) != fingerprint.get(k))
            raise SpectrascopeError(
                f"--resume with different options than the interrupted run ({', '.join(changed)}); "
                "rerun with the same options or without --resume"
            )
    if not resume:
        for part in ("steps", "work"):
            shutil.rmtree(out / part, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _open_all(series: list[Checkpoint], allow_pickle: bool) -> dict[Checkpoint, Any]:
    """Open every checkpoint (headers only); a SpectrascopeError instead of the source if it fails.
    Checks that the readable ones share one architecture."""
    opened: dict[Checkpoint, Any] = {}
    for cp in series:
        try:
            opened[cp] = open_source(cp.path, allow_pickle)
        except SpectrascopeError as err:
            opened[cp] = err
    check_same_architecture(
        {cp: matrix_signature(s.tensors()) for cp, s in opened.items() if not isinstance(s, SpectrascopeError)}
    )
    return opened


def _load_runnable(cp: Checkpoint):
    from ..models.loaded import load_model

    return load_model(cp.path)


def _model_tables(
    cp: Checkpoint, head_scores: bool, activations: str | None, metric: UserMetric | None, activation_tokens: int
) -> tuple[dict[str, pd.DataFrame], str]:
    """Head scores, activation spectra, user metric of one checkpoint (the model is loaded once)."""
    tables: dict[str, pd.DataFrame] = {}
    try:
        loaded = _load_runnable(cp)
        if head_scores:
            from ..mech.head_scores import head_scores as compute_scores

            tables["scores"] = compute_scores(loaded)
        if activations:
            from ..activations.run import run_activations

            acts, _, _ = run_activations(
                loaded,
                activations,
                "resid_post",
                activation_tokens,
                calibration_tokens=min(256, activation_tokens),
                seq_len=128,
            )
            tables["activations"] = acts
        if metric is not None:
            value = metric(loaded)
            values = dict(value) if isinstance(value, Mapping) else {"metric": float(value)}
            tables["metrics"] = pd.DataFrame([values])
    except SpectrascopeError as err:
        return tables, str(err)
    for df in tables.values():
        df.insert(0, "step", cp.step)
    return tables, ""


def track(
    checkpoints: str | Path | Sequence[str | Path],
    *,
    out: str | Path | None = None,
    precision: str = "exact",
    mp_fit: bool = True,
    randomize: bool = True,
    heads: bool = False,
    head_scores: bool = False,
    activations: str | None = None,
    activation_tokens: int = 2048,
    metric: UserMetric | None = None,
    seed: int = 0,
    workers: int = 1,
    resume: bool = False,
    allow_pickle: bool = False,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> TrackResult:
    """Weight spectra (and optionally mechanisms) of every checkpoint of a training run.

    Args:
        checkpoints: folders or files named by step, glob patterns, or a parent folder of
            step-named entries (:func:`spectrascope.dynamics.series.checkpoint_series`).
        out: where tables go as they finish (None: nothing written, no resume).
        precision, mp_fit, randomize, seed: the weights engine's options (MP spikes and
            correlation traps are on by default).
        heads: per-head q/k/v/o and QK/OV circuit spectra.
        head_scores: induction / previous-token / duplicate-token scores (loads the model).
        activations: comma-separated corpora for activation spectra at ``resid_post``
            (loads the model and its tokenizer), from ``activation_tokens`` tokens per corpus.
        metric: ``metric(loaded_model) -> float | {name: float}``, a user metric per step.
        workers: engine worker processes within a checkpoint.
        resume: skip checkpoints finished in ``out`` and resume the one in progress.
        memory_budget: bytes of tensor working sets in flight (engine default 2 GiB).
    Returns:
        :class:`TrackResult` (module docstring for the tables).
    Raises:
        SpectrascopeError: no series can be formed, mixed architectures, or no checkpoint
            could be read at all.
    """
    series = checkpoint_series(checkpoints)
    options = WeightsOptions(precision=precision, mp_fit=mp_fit, randomize=randomize, seed=seed)
    fingerprint = _options_fingerprint(
        options,
        {
            "heads": heads,
            "head_scores": head_scores,
            "activations": activations,
            "activation_tokens": activation_tokens,
            "metric": metric is not None,
        },
    )
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        _prepare_out(out_dir, fingerprint, resume)
        (out_dir / TRACK_FILE).write_text(
            json.dumps({"options": fingerprint, "series": [[cp.step, str(cp.path)] for cp in series]}, indent=1)
        )
    opened = _open_all(series, allow_pickle)
    if all(isinstance(s, SpectrascopeError) for s in opened.values()):
        first = next(iter(opened.values()))
        raise SpectrascopeError(f"no checkpoint of the series can be read (first: {first})")
    tracker = _Tracker(options, heads, out_dir, workers, memory_budget, allow_pickle)
    collected: dict[str, list[pd.DataFrame]] = {k: [] for k in ("weights", "heads", "scores", "activations", "metrics")}
    status_rows, failed = [], []
    with progress_bar("tracking checkpoints", total=len(series), enabled=show_progress) as advance:
        for cp in series:
            start = time.perf_counter()
            source = opened[cp]
            if isinstance(source, SpectrascopeError):
                failed.append((cp, str(source)))
                status_rows.append(
                    {
                        "step": cp.step,
                        "path": str(cp.path),
                        "status": "failed",
                        "reason": str(source),
                        "computed": 0,
                        "reused": 0,
                        "seconds": 0.0,
                    }
                )
                advance(1)
                continue
            tables, model_reason = _track_one(tracker, cp, source, head_scores, activations, activation_tokens, metric)
            weights = tables["weights"]
            for key, df in tables.items():
                collected[key].append(df)
            n_failed = int((weights["status"] == "failed").sum())
            status = "failed" if n_failed == len(weights) else ("partial" if n_failed or model_reason else "ok")
            reasons = [model_reason] if model_reason else []
            if n_failed:
                first_reason = weights.loc[weights["status"] == "failed", "reason"].iloc[0]
                reasons.insert(0, f"{n_failed} of {len(weights)} matrices failed: {first_reason}")
            status_rows.append(
                {
                    "step": cp.step,
                    "path": str(cp.path),
                    "status": status,
                    "reason": "; ".join(reasons),
                    "computed": int((~weights["reused"].astype(bool)).sum()),
                    "reused": int(weights["reused"].astype(bool).sum()),
                    "seconds": time.perf_counter() - start,
                }
            )
            advance(1)
    reference = collected["weights"][0] if collected["weights"] else None
    collected["weights"] += [tracker.failed_rows(cp, reason, reference) for cp, reason in failed]
    result = _assemble(collected, pd.DataFrame(status_rows), out_dir)
    if out_dir is not None:
        for stem, table in result.tables().items():
            write_table(table, out_dir, stem)
        shutil.rmtree(out_dir / "work", ignore_errors=True)
    return result


def _track_one(
    tracker: _Tracker,
    cp: Checkpoint,
    source,
    head_scores: bool,
    activations: str | None,
    activation_tokens: int,
    metric: UserMetric | None,
) -> tuple[dict[str, pd.DataFrame], str]:
    """(tables, why the model-level tables failed or '') of one checkpoint: loaded from OUT
    when finished earlier, else computed and saved."""
    tables: dict[str, pd.DataFrame] = {}
    reason = ""
    weights = tracker.load_done(cp, "weights")
    heads = tracker.load_done(cp, "heads") if tracker.heads else None
    digests: dict[str, str | None] | None = None
    if weights is None or (tracker.heads and heads is None):
        digester = TensorDigests(source)
        digests = {
            info.name: digester.digest(info.name)
            for info in source.tensors()
            if len(info.shape) == 2 and not info.dtype.lower().startswith(_INTEGER_DTYPES)
        }
    if weights is None:
        assert digests is not None  # computed above for a missing table
        weights = tracker.matrices(cp, source, digests)
        tracker.save(cp, "weights", weights)
    tables["weights"] = weights
    if tracker.heads:
        if heads is None:
            assert digests is not None  # computed above for a missing table
            heads = tracker.head_table(cp, source, digests)
            tracker.save(cp, "heads", heads)
        tables["heads"] = heads
    tracker.cache.learn(weights, heads)
    wanted = {"scores": head_scores, "activations": bool(activations), "metrics": metric is not None}
    done = {k: tracker.load_done(cp, k) for k, on in wanted.items() if on}
    if any(v is None for v in done.values()):
        computed, reason = _model_tables(cp, head_scores, activations, metric, activation_tokens)
        for key, df in computed.items():
            tracker.save(cp, key, df)
        done = {k: computed.get(k) for k in done}
    tables.update({k: v for k, v in done.items() if v is not None})
    return tables, reason


def _assemble(collected: dict[str, list[pd.DataFrame]], checkpoints: pd.DataFrame, out: Path | None) -> TrackResult:
    def concat(key: str) -> pd.DataFrame | None:
        frames = [f for f in collected[key] if f is not None and len(f)]
        if not frames:
            return None
        return pd.concat(frames, ignore_index=True).sort_values("step", kind="stable").reset_index(drop=True)

    weights = concat("weights")
    if weights is None:
        weights = pd.DataFrame(columns=STEP_LEAD + LEAD_COLUMNS + ["status", "reason"])
    return TrackResult(
        weights=weights,
        checkpoints=checkpoints.sort_values("step").reset_index(drop=True),
        heads=concat("heads"),
        scores=concat("scores"),
        activations=concat("activations"),
        metrics=concat("metrics"),
        out=out,
    )
