"""Training an SAE on activations: in memory, from an activation store, or from a model.

:func:`train_sae` runs Adam on mini-batches of activations for a token budget:

0. massive-activation rows (norm above 10x the batch median, :mod:`spectrascope.sae.massive`)
   are dropped from every batch, as the first position is left out of the store;
1. inputs are scaled by one number s so that their mean squared norm is 1 (estimated on the
   first batches; the JumpReLU and L1 coefficients then mean the same on every model), and
   the scale is folded into the weights at the end, so the SAE works on raw activations
   (:meth:`SparseAutoencoder.fold_input_scale`);
2. ``b_dec`` starts at the mean of those inputs, decoder rows on the unit sphere, ``W_enc``
   tied to ``W_dec^T``;
3. each step: loss, backward, the decoder gradient projected onto the sphere's tangent,
   Adam, decoder rows renormalized, the architecture's ``after_step`` (thresholds,
   sparsity coefficient);
4. a feature is *dead* when it has not fired for ``dead_after_tokens`` tokens. TopK and
   BatchTopK revive dead features through their AuxK loss; ReLU and JumpReLU resample them
   (Bricken et al. 2023: decoder row = a poorly reconstructed input's direction, encoder
   column the same direction at 0.2 x the mean live encoder norm, its Adam state reset) at
   25 % and 50 % of training;
5. the learning rate warms up over the first 1 % of steps and decays linearly to 0 over the
   last 20 %;
6. an SAE whose sparsity coefficient follows a target L0 (ReLU, JumpReLU with ``k``) ends at
   that L0 on up to :data:`MATCH_ROWS` of the rows of step 1: :func:`~spectrascope.sae.sparsity.match_l0` moves its firing
   cutoffs by one common offset (``metadata["training"]["l0_match"]``: L0 before and after).

One seed fixes initialization, data order and resampling. A progress bar shows tokens/s,
loss, L0 and the dead fraction; ``sae.training_log`` keeps the same numbers every
``log_every`` steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from .base import SaeError, SparseAutoencoder, TrainingOutput
from .massive import MASSIVE_FACTOR, massive_mask
from .registry import build_sae, check_settings
from .sparsity import match_l0

LOG_COLUMNS = [
    "step",
    "tokens",
    "seconds",
    "tokens_per_s",
    "loss",
    "mse",
    "explained_variance",
    "l0",
    "dead_fraction",
    "sparsity_coefficient",
]
"""Columns of ``sae.training_log``: ``mse`` is the mean squared reconstruction error per token
(summed over dimensions) and ``explained_variance`` 1 - mse / variance of the batch, both on
the scaled inputs of the current batch; ``l0`` mean active features per token;
``dead_fraction`` the share of features dead at that step."""

MATCH_ROWS = 4096
"""Training rows on which a target L0 is met after training (their pre-activations are held at once)."""

RESAMPLE_AT = (0.25, 0.5)
"""Fractions of training at which ReLU and JumpReLU SAEs resample their dead features."""


class ActivationSource(Protocol):
    """Anything the trainer can read activations from: an in-memory array or a store."""

    @property
    def d(self) -> int:
        """Width of the activations."""
        ...

    @property
    def n_tokens(self) -> int:
        """Number of activation rows."""
        ...

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """One shuffled pass, (batch, d) float tensors (the last batch may be smaller)."""
        ...


class ArraySource:
    """An in-memory (n, d) array or tensor, shuffled each epoch."""

    def __init__(self, data: np.ndarray | torch.Tensor) -> None:
        tensor = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data)
        if tensor.ndim != 2:
            raise SaeError(f"activations must be an (n, d) array; got shape {tuple(tensor.shape)}")
        if tensor.shape[0] < 1 or tensor.shape[1] < 1:
            raise SaeError(f"activations must have at least one row and one column; got shape {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            tensor = tensor.float()
        if not bool(torch.isfinite(tensor).all()):
            raise SaeError("activations contain NaN or Inf")
        self.data = tensor
        self.d = int(tensor.shape[1])
        self.n_tokens = int(tensor.shape[0])

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        order = torch.randperm(self.n_tokens, generator=generator)
        for start in range(0, self.n_tokens, batch_size):
            yield self.data[order[start : start + batch_size]].float()


def as_source(activations: Any) -> ActivationSource:
    """An :class:`ActivationSource` from an array, a tensor, a store or a store folder."""
    from .store import ActivationStore

    if isinstance(activations, (np.ndarray, torch.Tensor)):
        return ArraySource(activations)
    if isinstance(activations, ActivationStore):
        return activations
    if isinstance(activations, (str, Path)) and ActivationStore.is_store(activations):
        return ActivationStore.open(activations)
    if hasattr(activations, "batches") and hasattr(activations, "d"):
        return activations
    raise SaeError(
        f"cannot train on a {type(activations).__name__}: pass an (n, d) array or tensor, an "
        "activation store, or a model with site= and corpus="
    )


def default_learning_rate(d_sae: int) -> float:
    """2e-4 / sqrt(d_sae / 16384), Gao et al.'s scaling law for the learning rate, capped at 4e-3."""
    return min(4e-3, 2e-4 / math.sqrt(d_sae / 16384))


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise SaeError(f"unknown device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SaeError(f"device {device!r} requested but CUDA is not available (use cpu or auto)")
    return dev


def _learning_rate_factor(step: int, steps: int) -> float:
    warmup = max(1, steps // 100)
    if step < warmup:
        return (step + 1) / warmup
    decay_start = int(0.8 * steps)
    if step >= decay_start:
        return max(0.0, (steps - step) / max(1, steps - decay_start))
    return 1.0


def _cycle(source: ActivationSource, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled batches (epoch after epoch), only full batches."""
    while True:
        produced = False
        for batch in source.batches(batch_size, generator):
            if batch.shape[0] == batch_size:
                produced = True
                yield batch
        if not produced:
            raise SaeError(
                f"the activations hold fewer tokens ({source.n_tokens}) than one batch ({batch_size}); "
                "lower --batch-size or collect more tokens"
            )


def sample_rows(
    source: ActivationSource,
    batch_size: int,
    seed: int,
    max_rows: int = 16384,
    massive_factor: float | None = MASSIVE_FACTOR,
) -> torch.Tensor:
    """Up to ``max_rows`` shuffled rows of ``source`` (massive rows left out), (n, d) float64."""
    generator = torch.Generator().manual_seed(seed + 7919)
    rows, seen = [], 0
    for batch in source.batches(min(batch_size, max_rows), generator):
        rows.append(batch[~massive_mask(batch, massive_factor)].double())
        seen += batch.shape[0]
        if seen >= max_rows:
            break
    if not rows:
        raise SaeError("no activations to train on")
    return torch.cat(rows)


def input_scale(sample: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(s, mean of s*x) of (n, d) rows: s = 1 / sqrt(mean ||x||^2)."""
    mean_square = float(sample.pow(2).sum(dim=1).mean())
    if not mean_square > 0:
        raise SaeError("the activations are all zero: nothing to train on")
    scale = 1.0 / math.sqrt(mean_square)
    return scale, (sample.mean(dim=0) * scale).float()


class DeadTracker:
    """Tokens since each feature last fired; a feature is dead past ``dead_after_tokens``."""

    def __init__(self, d_sae: int, dead_after_tokens: int, device: torch.device) -> None:
        self.since = torch.zeros(d_sae, dtype=torch.long, device=device)
        self.dead_after_tokens = int(dead_after_tokens)

    def update(self, codes: torch.Tensor) -> None:
        fired = (codes > 0).any(dim=0)
        self.since += codes.shape[0]
        self.since[fired] = 0

    @property
    def dead(self) -> torch.Tensor:
        return self.since >= self.dead_after_tokens

    def reset(self, features: torch.Tensor) -> None:
        self.since[features] = 0


@torch.no_grad()
def resample_dead(
    sae: SparseAutoencoder, optimizer: torch.optim.Adam, x: torch.Tensor, dead: torch.Tensor, generator: torch.Generator
) -> int:
    """Reinitialize dead features toward inputs the SAE reconstructs worst (see module docstring).

    Returns the number of features resampled.
    """
    index = torch.nonzero(dead).flatten()
    if index.numel() == 0:
        return 0
    errors = (x - sae(x)).pow(2).sum(dim=1).double()
    weights = errors.pow(2).cpu()
    if not float(weights.sum()) > 0:
        return 0
    picks = torch.multinomial(weights, index.numel(), replacement=True, generator=generator).to(x.device)
    directions = x[picks] - sae.b_dec
    directions /= directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
    alive = ~dead
    enc_norm = float(sae.W_enc[:, alive].norm(dim=0).mean()) if bool(alive.any()) else 1.0
    sae.W_dec[index] = directions
    sae.W_enc[:, index] = directions.T * 0.2 * enc_norm
    sae.b_enc[index] = 0.0
    for param, rows in ((sae.W_dec, (index,)), (sae.W_enc, (slice(None), index)), (sae.b_enc, (index,))):
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][rows] = 0.0
    return int(index.numel())


def _progress(total: int, enabled: bool):
    """A rich progress bar over tokens with tokens/s, loss, L0 and dead fraction, or None."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]train SAE"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} tokens"),
        TextColumn("{task.fields[rate]:,.0f} tok/s"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("L0 {task.fields[l0]:.1f}"),
        TextColumn("dead {task.fields[dead]:.1%}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    progress = Progress(*columns, console=Console(stderr=True), transient=False)
    progress.start()
    task = progress.add_task("train", total=total, rate=0.0, loss=float("nan"), l0=0.0, dead=0.0)
    return progress, task


def fit(
    sae: SparseAutoencoder,
    source: ActivationSource,
    tokens: int,
    batch_size: int = 1024,
    lr: float | None = None,
    seed: int = 0,
    dead_after_tokens: int | None = None,
    resample: bool | None = None,
    log_every: int = 50,
    show_progress: bool = False,
    massive_factor: float | None = MASSIVE_FACTOR,
) -> SparseAutoencoder:
    """Train ``sae`` in place on ``source`` for ``tokens`` tokens (see the module docstring).

    Args:
        sae: a fresh SAE (:func:`~spectrascope.sae.registry.build_sae`), on the device to use.
        source: the activations (:class:`ActivationSource`); its width must equal ``sae.d_in``.
        tokens: training tokens (epochs repeat the data when it is smaller).
        batch_size: tokens per step.
        lr: Adam's learning rate (None: :func:`default_learning_rate`).
        dead_after_tokens: tokens without firing after which a feature counts as dead
            (None: a twentieth of the training tokens, at least 10 batches).
        resample: resample dead features (None: yes for relu and jumprelu, which have no AuxK).
        massive_factor: rows with a norm above this many batch medians are dropped (None: keep all).
    Returns:
        ``sae`` in eval mode, the input scale folded in, with ``training_log`` (a DataFrame,
        :data:`LOG_COLUMNS`) and ``metadata["training"]`` (settings and final numbers).
    """
    if source.d != sae.d_in:
        raise SaeError(f"the activations have width {source.d} but the SAE has d_in = {sae.d_in}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise SaeError(f"tokens must be a positive integer (got {tokens!r})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SaeError(f"batch size must be a positive integer (got {batch_size!r})")
    steps = max(1, tokens // batch_size)
    lr = default_learning_rate(sae.d_sae) if lr is None else float(lr)
    if not lr > 0:
        raise SaeError(f"the learning rate must be positive (got {lr})")
    dead_after_tokens = max(10 * batch_size, tokens // 20) if dead_after_tokens is None else int(dead_after_tokens)
    resample = sae.architecture in ("relu", "jumprelu") if resample is None else bool(resample)
    device = sae.device
    sample = sample_rows(source, batch_size, seed, massive_factor=massive_factor)
    scale, mean = input_scale(sample)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.b_dec.copy_(mean.to(device))
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999))
    tracker = DeadTracker(sae.d_sae, dead_after_tokens, device)
    resample_steps = {int(f * steps) for f in RESAMPLE_AT} if resample else set()
    batches = _cycle(source, batch_size, generator)
    log: list[dict] = []
    resampled = skipped = 0
    bar = _progress(steps * batch_size, show_progress)
    start = time.perf_counter()
    sae.train()
    try:
        for step in range(steps):
            x = next(batches).to(device, non_blocking=True)
            massive = massive_mask(x, massive_factor)
            skipped += int(massive.sum())
            x = x[~massive] * scale
            for group in optimizer.param_groups:
                group["lr"] = lr * _learning_rate_factor(step, steps)
            output = sae.training_output(x, tracker.dead)
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            sae.project_decoder_grad()
            optimizer.step()
            sae.normalize_decoder()
            sae.after_step(output)
            tracker.update(output.codes.detach())
            if step in resample_steps:
                revived = tracker.dead.clone()
                n = resample_dead(sae, optimizer, x, revived, generator)
                if n:
                    tracker.reset(torch.nonzero(revived).flatten())
                resampled += n
            if step % log_every == 0 or step == steps - 1:
                row = _log_row(step, batch_size, start, x, output, tracker, sae)
                log.append(row)
                if bar is not None:
                    bar[0].update(
                        bar[1],
                        completed=(step + 1) * batch_size,
                        rate=row["tokens_per_s"],
                        loss=row["loss"],
                        l0=row["l0"],
                        dead=row["dead_fraction"],
                    )
    finally:
        if bar is not None:
            bar[0].stop()
    seconds = time.perf_counter() - start
    sae.eval()
    target = getattr(getattr(sae, "sparsity", None), "target", None)
    matched = None
    if target is not None:  # (rows, d_sae) pre-activations: at most MATCH_ROWS rows of them
        rows = sample[:MATCH_ROWS]
        matched = {**match_l0(sae, (rows * scale).to(device), target), "rows": int(rows.shape[0])}
    with torch.no_grad():
        sae.fold_input_scale(scale)
    sae.training_log = pd.DataFrame(log, columns=LOG_COLUMNS)
    final = log[-1]
    sae.metadata["training"] = {
        "tokens": steps * batch_size,
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": lr,
        "seed": seed,
        "seconds": round(seconds, 3),
        "tokens_per_s": steps * batch_size / max(seconds, 1e-9),
        "input_scale": scale,
        "dead_after_tokens": dead_after_tokens,
        "resampled_features": resampled,
        "massive_factor": massive_factor,
        "massive_rows_skipped": skipped,
        "device": str(device),
        "final_l0": final["l0"],
        "final_explained_variance": final["explained_variance"],
        "final_dead_fraction": final["dead_fraction"],
        "l0_match": matched,
        **sae.hyperparameters(),
    }
    return sae


def _log_row(
    step: int,
    batch_size: int,
    start: float,
    x: torch.Tensor,
    output: TrainingOutput,
    tracker: DeadTracker,
    sae: SparseAutoencoder,
) -> dict:
    with torch.no_grad():
        mse = float(output.terms.get("mse", output.loss))
        variance = float((x - x.mean(dim=0)).pow(2).sum(dim=1).mean())
        seconds = time.perf_counter() - start
        tokens = (step + 1) * batch_size
        sparsity = getattr(sae, "sparsity", None)
        return {
            "step": step,
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens / max(seconds, 1e-9),
            "loss": float(output.loss),
            "mse": mse,
            "explained_variance": 1.0 - mse / variance if variance > 0 else float("nan"),
            "l0": float((output.codes > 0).sum(dim=-1).float().mean()),
            "dead_fraction": float(tracker.dead.float().mean()),
            "sparsity_coefficient": sparsity.value if sparsity is not None else float("nan"),
        }


def train_sae(
    activations_or_model: Any,
    arch: str = "topk",
    d_sae: int | None = None,
    k: float | None = None,
    *,
    site: str | None = None,
    corpus: str | None = None,
    tokens: int = 200_000,
    store_tokens: int | None = None,
    store_dir: str | Path | None = None,
    store_dtype: str = "float16",
    seq_len: int = 128,
    skip_first: bool = True,
    batch_size: int = 1024,
    lr: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    expansion: int = 8,
    dead_after_tokens: int | None = None,
    resample: bool | None = None,
    out: str | Path | None = None,
    log_every: int = 50,
    massive_factor: float | None = MASSIVE_FACTOR,
    show_progress: bool = False,
    **settings: Any,
) -> SparseAutoencoder:
    """Train a sparse autoencoder (the ``spectrascope sae train`` verb).

    Args:
        activations_or_model: an (n, d) array or tensor of activations; an
            :class:`~spectrascope.sae.store.ActivationStore` (or its folder); or a model
            (bundled name, path or loaded model), then with ``site`` and ``corpus``: its
            activations are streamed into an activation store first.
        arch: relu, topk, batch_topk or jumprelu (:mod:`spectrascope.sae.registry`).
        d_sae: number of features (None: ``expansion * d_in``).
        k: active features per token (topk exact, batch_topk on average) or the target L0 of
            relu / jumprelu.
        site: the model site (``blocks.{L}.hook_resid_post`` ...); model input only.
        corpus: comma-separated built-in corpora and/or paths; model input only (None: all
            built-in domains).
        tokens: training tokens; store_tokens: activations collected from the model (None:
            ``tokens``; when smaller, epochs repeat them).
        store_dir: where the store lives (None: ``out/activation_store`` when ``out`` is
            given, else a temporary folder removed afterwards); an existing store there is
            resumed.
        store_dtype: float16 or bfloat16 on disk; seq_len: tokens per text;
            skip_first: leave each text's first position (the attention sink) out.
        batch_size, lr, seed, dead_after_tokens, resample, log_every, massive_factor: see :func:`fit`.
        device: cpu, cuda or auto.
        out: when given, the SAE is saved there in SAELens's format
            (:func:`~spectrascope.sae.saelens_io.save_sae`) with ``training_log.parquet``.
        settings: the architecture's own options (``l1_coefficient``, ``l0_coefficient``,
            ``bandwidth``, ``k_aux`` ...).
    """
    import tempfile

    check_settings(arch, d_sae, k)  # bad settings fail before any data is collected
    if out is not None:
        from .saelens_io import check_sae_target

        check_sae_target(out)  # and an output that cannot be written, before any training
    dev = _device(device)

    def train_on(source: Any) -> SparseAutoencoder:
        return _train(
            source,
            arch,
            d_sae,
            k,
            expansion,
            seed,
            dev,
            tokens,
            batch_size,
            lr,
            dead_after_tokens,
            resample,
            log_every,
            massive_factor,
            show_progress,
            settings,
        )

    if isinstance(activations_or_model, (np.ndarray, torch.Tensor)) or _is_store(activations_or_model):
        if site is not None or corpus is not None:
            raise SaeError("site and corpus apply to a model; these activations are already collected")
        source = as_source(activations_or_model)
        sae = train_on(source)
    else:
        from ..corpora import DEFAULT_CORPORA
        from .store import build_store

        if site is None:
            raise SaeError("training on a model needs a site, e.g. site='blocks.6.hook_resid_post'")
        temporary = None
        if store_dir is None:
            if out is not None:
                store_dir = Path(out).with_name(Path(out).name + "-activations")
            else:
                temporary = tempfile.TemporaryDirectory(prefix="spectrascope-store-")
                store_dir = temporary.name
        try:
            store = build_store(
                activations_or_model,
                site,
                corpus or DEFAULT_CORPORA,
                store_tokens or tokens,
                store_dir,
                dtype=store_dtype,
                seq_len=seq_len,
                skip_first=skip_first,
                device=device,
                show_progress=show_progress,
            )
            sae = train_on(store)
            sae.metadata.update(store.sae_metadata())
        finally:
            if temporary is not None:
                temporary.cleanup()
    if out is not None:
        from ..tables import write_table
        from .saelens_io import save_sae

        folder = save_sae(sae, out)
        write_table(sae.training_log, folder, "training_log")
    return sae


def _is_store(obj: Any) -> bool:
    from .store import ActivationStore

    return isinstance(obj, ActivationStore) or (isinstance(obj, (str, Path)) and ActivationStore.is_store(obj))


def _train(
    source: Any,
    arch: str,
    d_sae: int | None,
    k: float | None,
    expansion: int,
    seed: int,
    device: torch.device,
    tokens: int,
    batch_size: int,
    lr: float | None,
    dead_after_tokens: int | None,
    resample: bool | None,
    log_every: int,
    massive_factor: float | None,
    show_progress: bool,
    settings: dict,
) -> SparseAutoencoder:
    source = as_source(source)
    if d_sae is None:
        d_sae = int(expansion) * source.d
    sae = build_sae(arch, source.d, d_sae, k=k, seed=seed, **settings).to(device)
    return fit(
        sae, source, tokens, batch_size, lr, seed, dead_after_tokens, resample, log_every, show_progress, massive_factor
    )
