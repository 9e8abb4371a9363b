"""SAE folders in SAELens's format, both ways.

A folder holds ``cfg.json`` and ``sae_weights.safetensors`` with the tensors ``W_enc
(d_in, d_sae)``, ``W_dec (d_sae, d_in)``, ``b_enc (d_sae)``, ``b_dec (d_in)`` and, for the
JumpReLU family, ``threshold (d_sae)``. cfg.json carries ``d_in``, ``d_sae``, ``dtype``,
``device``, ``apply_b_dec_to_input``, ``normalize_activations``, ``reshape_activations``,
``architecture`` (``standard``, ``topk``, ``jumprelu``), ``k`` and
``rescale_acts_by_decoder_norm`` for TopK, and a free-form ``metadata`` object (``model_name``,
``hook_name`` ...), the layout SAELens 6 writes and reads.

Architectures: spectrascope ``relu`` <-> ``standard``, ``topk`` <-> ``topk``, ``jumprelu``
<-> ``jumprelu``; ``batch_topk`` is saved as ``jumprelu`` with its global threshold in every
entry (as SAELens saves its BatchTopK SAEs) and ``metadata.spectrascope.architecture =
"batch_topk"`` so spectrascope reads it back as one. A SAELens TopK SAE with
``rescale_acts_by_decoder_norm`` is loaded with the decoder norms folded into the encoder
(same codes, unit-norm decoder rows). ``normalize_activations`` must be ``none`` or
``expected_average_only_in`` (SAELens applies neither at inference); others are refused.

:func:`save_sae` writes into a temporary sibling folder and renames it into place, so an
interrupted save never leaves a folder that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .base import SaeError, SparseAutoencoder
from .batch_topk import BatchTopKSAE
from .registry import ARCHITECTURES, architecture_class
from .topk import TopKSAE

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
SAELENS_FORMAT_VERSION = "6.0.0"
"""Written as ``metadata.sae_lens_version``: the cfg.json layout (SAELens >= 6) this folder follows;
SAELens converts older layouts on load, so the field must say which one this is."""
FROM_SAELENS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
INFERENCE_NORMALIZATIONS = ("none", "expected_average_only_in")


def check_sae_target(folder: str | Path) -> Path:
    """Check, before any work, that an SAE can be saved at ``folder``: new, empty, or an SAE
    folder (replaced), with a writable parent. Returns the path.

    Raises:
        SaeError: another existing path. OutputError: the parent cannot be written.
    """
    from ..outdir import check_writable

    folder = Path(folder)
    if folder.exists() and not (folder.is_dir() and (not any(folder.iterdir()) or (folder / CFG_FILENAME).exists())):
        raise SaeError(f"{folder} exists and is not an SAE folder; choose a new or empty folder")
    check_writable(folder.parent)
    return folder


def save_sae(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write ``sae`` as a SAELens folder (float32 weights); returns the folder.

    An existing SAE folder at ``folder`` is replaced; any other existing, non-empty path is
    refused (SaeError).
    """
    folder = check_sae_target(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_file({k: v.float() for k, v in _saelens_tensors(sae).items()}, str(tmp / WEIGHTS_FILENAME))
        (tmp / CFG_FILENAME).write_text(json.dumps(saelens_config(sae), indent=1, default=_json_default))
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / "sae")
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _saelens_tensors(sae: SparseAutoencoder) -> dict[str, torch.Tensor]:
    tensors = sae.state_tensors()
    if sae.saelens_architecture == "jumprelu" and "threshold" not in tensors:
        raise SaeError(f"{sae.architecture}: a JumpReLU-format SAE needs a threshold")
    return tensors


def saelens_config(sae: SparseAutoencoder) -> dict[str, Any]:
    """The cfg.json of ``sae`` (see the module docstring)."""
    from .. import __version__

    metadata = {
        "sae_lens_version": SAELENS_FORMAT_VERSION,
        "sae_lens_training_version": SAELENS_FORMAT_VERSION,
        **{k: v for k, v in sae.metadata.items() if k not in ("spectrascope", "training")},
        "spectrascope": {
            "version": __version__,
            "architecture": sae.architecture,
            "hyperparameters": sae.hyperparameters(),
            "training": sae.metadata.get("training", {}),
        },
    }
    hook = str(metadata.get("hook_name") or "")
    cfg: dict[str, Any] = {
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "hook_z" if hook.endswith("hook_z") else "none",
        "metadata": metadata,
        "architecture": sae.saelens_architecture,
    }
    if sae.saelens_architecture == "topk":
        assert isinstance(sae, TopKSAE)  # the one architecture SAELens calls topk
        cfg.update(k=int(sae.k), rescale_acts_by_decoder_norm=False)
    return cfg


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CFG_FILENAME
    if not folder.is_dir():
        raise SaeError(f"{folder}: no such SAE folder")
    if not path.is_file():
        raise SaeError(f"{folder}: not an SAE folder (no {CFG_FILENAME})")
    try:
        cfg = json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise SaeError(f"{path}: unreadable SAE config ({str(err).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise SaeError(f"{path}: unreadable SAE config (not a JSON object)")
    for key in ("d_in", "d_sae"):
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SaeError(f"{path}: {key} must be a positive integer (got {value!r})")
    normalization = cfg.get("normalize_activations", "none")
    if normalization not in INFERENCE_NORMALIZATIONS:
        raise SaeError(
            f"{path}: normalize_activations={normalization!r} is not supported (only "
            f"{' or '.join(INFERENCE_NORMALIZATIONS)}, which act as the identity at inference)"
        )
    return cfg


def _architecture(cfg: dict[str, Any], path: Path) -> str:
    ours = (cfg.get("metadata") or {}).get("spectrascope", {}) if isinstance(cfg.get("metadata"), dict) else {}
    if isinstance(ours, dict) and ours.get("architecture") in ARCHITECTURES:
        return str(ours["architecture"])
    name = cfg.get("architecture", "standard")
    if name not in FROM_SAELENS:
        raise SaeError(f"{path}: SAE architecture {name!r} is not supported (supported: {', '.join(FROM_SAELENS)})")
    return FROM_SAELENS[name]


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS_FILENAME
    if not path.is_file():
        raise SaeError(f"{folder}: no {WEIGHTS_FILENAME}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise SaeError(
            f"{path}: corrupt weights file ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from None


def _check_tensors(tensors: dict[str, torch.Tensor], cfg: dict[str, Any], needs_threshold: bool, path: Path) -> None:
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    if needs_threshold:
        shapes["threshold"] = (d_sae,)
    for name, shape in shapes.items():
        if name not in tensors:
            raise SaeError(f"{path}: tensor {name} missing (it has {', '.join(sorted(tensors)) or 'none'})")
        if tuple(tensors[name].shape) != shape:
            raise SaeError(
                f"{path}: {name} has shape {tuple(tensors[name].shape)}; cfg.json (d_in={d_in}, "
                f"d_sae={d_sae}) needs {shape}"
            )
        if not tensors[name].is_floating_point() or not bool(torch.isfinite(tensors[name]).all()):
            raise SaeError(f"{path}: {name} has non-finite or non-float entries")


def load_sae(folder: str | Path, device: str = "cpu") -> SparseAutoencoder:
    """Read a SAELens folder (written by spectrascope or by SAELens) as a spectrascope SAE.

    Returns the SAE in eval mode, float32, on ``device``; ``sae.metadata`` is cfg.json's
    ``metadata``. Raises SaeError (one line) for a missing or corrupt folder, an unsupported
    architecture or normalization, or tensors that do not match cfg.json.
    """
    folder = Path(folder)
    cfg = _read_config(folder)
    arch = _architecture(cfg, folder)
    cls = architecture_class(arch)
    weights_path = folder / WEIGHTS_FILENAME
    tensors = _read_weights(folder)
    if "log_threshold" in tensors and "threshold" not in tensors:  # older SAELens JumpReLU files
        tensors["threshold"] = tensors.pop("log_threshold").exp()
    _check_tensors(tensors, cfg, cls.saelens_architecture == "jumprelu", weights_path)
    tensors = {k: v.float() for k, v in tensors.items()}
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    ours = (cfg.get("metadata") or {}).get("spectrascope", {}) if isinstance(cfg.get("metadata"), dict) else {}
    settings = dict(ours.get("hyperparameters", {})) if isinstance(ours, dict) else {}
    k = cfg.get("k", settings.get("k"))
    sae: SparseAutoencoder
    if arch == "topk":
        assert issubclass(cls, TopKSAE)  # the registry's class of "topk"
        if cfg.get("rescale_acts_by_decoder_norm"):
            _fold_decoder_norms(tensors)
        sae = cls(d_in, d_sae, k=k, k_aux=settings.get("k_aux"))
    elif arch == "batch_topk":
        assert issubclass(cls, BatchTopKSAE)  # the registry's class of "batch_topk"
        sae = cls(d_in, d_sae, k=k if k is not None else 1, k_aux=settings.get("k_aux"))
    else:
        sae = cls(d_in, d_sae)
    sae.apply_b_dec_to_input = bool(cfg.get("apply_b_dec_to_input", True))
    with torch.no_grad():
        for name, value in tensors.items():
            if hasattr(sae, name) and isinstance(getattr(sae, name), torch.Tensor):
                getattr(sae, name).copy_(value)
    sae.metadata = dict(cfg.get("metadata") or {})
    return sae.to(device).eval()


def _fold_decoder_norms(tensors: dict[str, torch.Tensor]) -> None:
    """SAELens TopK with decoder-norm rescaling -> plain TopK with unit-norm decoder rows.

    SAELens computes pre * ||W_dec[i]|| before the top-k and divides by the norm before
    decoding; multiplying W_enc's columns and b_enc by the norms and dividing W_dec's rows
    gives the same codes and reconstruction without the rescaling.
    """
    norms = tensors["W_dec"].norm(dim=1).clamp_min(1e-8)
    tensors["W_enc"] = tensors["W_enc"] * norms
    tensors["b_enc"] = tensors["b_enc"] * norms
    tensors["W_dec"] = tensors["W_dec"] / norms[:, None]


def is_sae_folder(path: str | Path) -> bool:
    """Whether ``path`` looks like an SAE folder (has cfg.json and the weights file)."""
    path = Path(path)
    return (path / CFG_FILENAME).is_file() and (path / WEIGHTS_FILENAME).is_file()
