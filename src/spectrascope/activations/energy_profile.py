"""Per-token energy of one text, layer by layer, against a cached reference Gaussian.

The reference at each site is the pooled moments of the reference corpora's calibration texts
(default: all built-in domains, ``max_tokens`` each; see :func:`~spectrascope.activations.run.calibrate`).
It is computed once per (model, sites, corpora, budget) and cached on disk as an .npz (mean and
covariance per site, float64).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..corpora import corpus_texts
from ..errors import OptionError
from ..models.gguf_convert import cache_root
from ..models.handle import as_model
from ..trace import run_with_cache
from ..trace.passes import SiteMoments, run_pass
from .run import DEFAULT_CORPORA, calibration_batches, site_label, site_list
from .token_energy import DEFAULT_RIDGE, ReferenceGaussian

REFERENCE_VERSION = 2


def _reference_path(loaded, names: list[str], corpora: str, max_tokens: int, seq_len: int) -> Path:
    model_id = str(getattr(loaded, "source_path", None) or getattr(loaded, "name", "model"))
    key = json.dumps([REFERENCE_VERSION, model_id, names, corpora, max_tokens, seq_len])
    return cache_root() / "references" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"


def reference_gaussians(
    loaded,
    names: list[str],
    corpora: str = DEFAULT_CORPORA,
    max_tokens: int = 2048,
    seq_len: int = 128,
    ridge: float = DEFAULT_RIDGE,
    cache: bool = True,
) -> dict[str, ReferenceGaussian]:
    """Reference Gaussian per site from the pooled corpora (cached on disk when ``cache``)."""
    path = _reference_path(loaded, names, corpora, max_tokens, seq_len)
    if cache and path.exists():
        data = np.load(path)
        return {n: ReferenceGaussian.from_arrays(data[f"{n}|mu"], data[f"{n}|cov"], ridge) for n in names}
    moments = SiteMoments(names)
    run_pass(loaded.hf, calibration_batches(loaded.tokenizer, corpus_texts(corpora), max_tokens, seq_len), [moments])
    arrays: dict[str, Any] = {}  # Any: np.savez takes them as keywords, which mypy also matches to allow_pickle
    for n, m in moments.moments.items():
        arrays[f"{n}|mu"] = m.mean.double().cpu().numpy()
        arrays[f"{n}|cov"] = m.covariance(ddof=1).double().cpu().numpy()
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    return {n: ReferenceGaussian.from_arrays(arrays[f"{n}|mu"], arrays[f"{n}|cov"], ridge) for n in names}


def text_energy(
    model,
    text: str,
    sites: str = "resid_post",
    corpora: str = DEFAULT_CORPORA,
    max_tokens: int = 2048,
    seq_len: int = 128,
    cache: bool = True,
) -> pd.DataFrame:
    """Energy of every token of ``text`` at every site.

    The first position is not scored: it is the attention sink, whose activations are
    text-independent and far from every other token's, and the reference Gaussian leaves it
    out (as every statistic does), so its energy would measure the sink, not the text. Its
    row has ``energy`` NaN and ``scored`` False.

    Returns:
        long DataFrame with columns site, layer, position, token, energy, scored.
    """
    if not text or not text.strip():
        raise OptionError("the text is empty")
    loaded = as_model(model)
    names = site_list(loaded, sites)
    references = reference_gaussians(loaded, names, corpora, max_tokens, seq_len, cache=cache)
    encoded = loaded.tokenizer(text, return_tensors="pt", truncation=True, max_length=seq_len)
    device = loaded.device
    _, cache_acts = run_with_cache(loaded.hf, encoded["input_ids"].to(device), sites=names)
    tokens = loaded.tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    rows = []
    for n in names:
        act = cache_acts[n][0]
        vectors = act.flatten(start_dim=1) if act.dim() == 3 else act
        energies = references[n].energy(vectors).numpy()
        site, layer = site_label(n)
        rows += [
            {
                "site": site,
                "layer": layer,
                "position": i,
                "token": t,
                "energy": float(e) if i > 0 else float("nan"),
                "scored": i > 0,
            }
            for i, (t, e) in enumerate(zip(tokens, energies, strict=True))
        ]
    return pd.DataFrame(rows)
