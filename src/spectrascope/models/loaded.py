"""Load a model as a runnable Hugging Face module with its tokenizer: :func:`load_model`.

The weight tools read tensors straight from files (open_source.py); the activation tools need
a model that runs. ``load_model`` accepts the same inputs as ``open_source``, minus the
in-memory ones:

* a bundled model name (``smollm2-135m``, ``minilm-l6``, see ``spectrascope models``);
* a Llama-architecture ``.gguf`` file (or a folder holding exactly one and no config.json): it
  is dequantized once into a float32 HF folder under the cache (gguf_convert.py), its
  tokenizer is built once from the GGUF metadata and saved into the same folder
  (tokenizer_cache.py), and every later load reads that folder (about a second instead of the
  ~20-30 s transformers needs to load the GGUF itself);
* a local HF directory (config.json + safetensors): ``AutoModelForCausalLM`` when the
  config's ``architectures`` name a ``*ForCausalLM`` / ``*LMHeadModel``,
  ``AutoModelForMaskedLM`` for ``*ForMaskedLM``, else ``AutoModel``; the tokenizer comes from
  the same folder when it has one (else ``LoadedModel.tokenizer`` is None).

Nothing is downloaded (``local_files_only=True``), no remote code runs, and pickle checkpoints
are refused (the runnable loader has no ``allow_pickle``). Every problem with the input is a
one-line :class:`~spectrascope.errors.SpectrascopeError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import OptionError, SourceError, SpectrascopeError
from .gguf_source import GGUF_MAGIC
from .handle import as_model, device_of
from .open_source import PICKLE_SUFFIXES
from .roles import HeadGeometry, family, head_geometry
from .tokenizer_cache import quiet_transformers
from .zoo import BUNDLED, bundled_path, is_toy_name

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)
WEIGHTS_GLOBS = ("*.safetensors", "model.safetensors.index.json")


@dataclass(frozen=True)
class ModelArch:
    """What the activation tools need to know about a loaded model's architecture.

    ``kind`` is the head the model was built with: ``"causal_lm"``, ``"masked_lm"`` or
    ``"base"`` (``AutoModel``). ``heads`` is :func:`roles.head_geometry` of the config (None when
    the config does not give head counts); ``family`` is :func:`roles.family` (None when
    unsupported by the role tables).
    """

    model_type: str
    family: str | None
    n_layers: int | None
    d_model: int | None
    heads: HeadGeometry | None
    vocab_size: int | None
    architectures: tuple[str, ...] = ()
    kind: str = "base"

    @property
    def head_geometry(self) -> HeadGeometry | None:
        return self.heads

    @property
    def n_heads(self) -> int | None:
        return self.heads.n_heads if self.heads else None

    @property
    def n_kv_heads(self) -> int | None:
        return self.heads.n_kv_heads if self.heads else None

    @property
    def head_dim(self) -> int | None:
        return self.heads.head_dim if self.heads else None

    @classmethod
    def from_config(cls, config: dict, kind: str = "base") -> ModelArch:
        """From a HF config dict (``PretrainedConfig.to_dict()`` or a parsed config.json)."""

        def first(*keys):
            for key in keys:
                if config.get(key) is not None:
                    return int(config[key])
            return None

        return cls(
            model_type=str(config.get("model_type", "")),
            family=family(config),
            n_layers=first("num_hidden_layers", "n_layer", "num_layers"),
            d_model=first("hidden_size", "n_embd", "d_model"),
            heads=head_geometry(config),
            vocab_size=first("vocab_size"),
            architectures=tuple(config.get("architectures") or ()),
            kind=kind,
        )


@dataclass
class LoadedModel:
    """A runnable model: ``hf`` (a transformers model in eval mode) and its tokenizer.

    Attributes:
        hf: the ``transformers.PreTrainedModel``, in eval mode.
        tokenizer: a transformers tokenizer (right padding; pad = eos when it had no pad
            token), or None when the source has none.
        arch: :class:`ModelArch`.
        name: the bundled name, or the file / folder name.
        source_path: what was asked for, resolved (the .gguf file for GGUF models).
        hf_dir: the HF folder the weights were loaded from (the cache folder for GGUF).
    """

    hf: Any
    tokenizer: Any
    arch: ModelArch
    name: str
    source_path: Path
    hf_dir: Path | None = None

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return device_of(self.hf)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    def tokenize(self, texts: list[str] | str, max_length: int = 512) -> dict[str, torch.Tensor]:
        """A padded batch on the model's device: :meth:`~spectrascope.models.handle.ModelHandle.tokenize`."""
        return as_model(self).tokenize(texts, max_length)


# ----------------------------------------------------------------------------- helpers


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0].strip() if text else type(err).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device this machine has ("auto": cuda when present, else cpu), else
    an OptionError naming ``device``. The one device check of the API and the CLI."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise OptionError(f"unknown {{option}} {device!r} ({_one_line(err)})", option="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"{{option}} {device!r}: CUDA is not available here (use cpu or auto)", option="device")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise OptionError(f"{{option}} {device!r}: MPS is not available here (use cpu or auto)", option="device")
    return dev


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise OptionError(f"unknown {{option}} {dtype!r} (use float32, float16 or bfloat16)", option="dtype")
    return value


def _is_gguf_file(path: Path) -> bool:
    if path.suffix.lower() == ".gguf":
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _has_weights(folder: Path) -> bool:
    return any(any(folder.glob(g)) for g in WEIGHTS_GLOBS)


def _pickles(folder: Path) -> list[Path]:
    return sorted(p for s in PICKLE_SUFFIXES for p in folder.glob(f"*{s}"))


def _refuse_pickle(path: Path) -> SourceError:
    what = "holds only pickle checkpoints (.bin/.pt)" if path.is_dir() else "is a pickle checkpoint"
    return SourceError(
        f"{path}: {what}, which load_model refuses to unpickle (they can run arbitrary code); convert the "
        "model to safetensors (model.save_pretrained(dir, safe_serialization=True))"
    )


def _read_config(folder: Path) -> dict:
    cfg = folder / "config.json"
    if not cfg.exists():
        raise SourceError(f"{folder}: no config.json (load_model needs a HF directory: config.json + safetensors)")
    try:
        config = json.loads(cfg.read_text())
    except (ValueError, OSError) as err:
        raise SourceError(f"{cfg}: invalid config ({_one_line(err)})") from None
    if not isinstance(config, dict):
        raise SourceError(f"{cfg}: invalid config (not a JSON object)")
    return config


def _kind(config: dict) -> str:
    archs = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal_lm"
    if any(a.endswith("ForMaskedLM") for a in archs):
        return "masked_lm"
    return "base"


def _auto_class(kind: str):
    import transformers

    return {
        "causal_lm": transformers.AutoModelForCausalLM,
        "masked_lm": transformers.AutoModelForMaskedLM,
        "base": transformers.AutoModel,
    }[kind]


def _check_model_type(folder: Path, config: dict) -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = config.get("model_type")
    if not model_type:
        raise SourceError(f"{folder / 'config.json'}: no model_type: not a transformers config")
    if model_type not in CONFIG_MAPPING:
        raise SourceError(
            f"{folder}: unknown architecture {model_type!r}: this transformers version cannot build it "
            "(remote code is never run)"
        )


def _load_hf(folder: Path, config: dict, dtype: torch.dtype, attn_implementation: str | None):
    """(model in eval mode, kind) from a HF folder with config.json + safetensors."""
    _check_model_type(folder, config)
    kind = _kind(config)
    auto = _auto_class(kind)
    kwargs = {"local_files_only": True, "use_safetensors": True, "dtype": dtype, "output_loading_info": True}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        with quiet_transformers():
            model, info = auto.from_pretrained(str(folder), **kwargs)
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - transformers raises many kinds; each becomes one line
        raise SourceError(
            f"{folder}: transformers cannot load this model ({type(err).__name__}: {_one_line(err)})"
        ) from None
    missing = [k for k in info.get("missing_keys", ()) if "pooler" not in k]
    if missing:
        raise SourceError(
            f"{folder}: the weights do not match the config ({len(missing)} tensors missing, e.g. {min(missing)!r})"
        )
    return model.eval(), kind


def _has_tokenizer_files(folder: Path) -> bool:
    return any((folder / name).exists() for name in TOKENIZER_FILES)


def _load_tokenizer(folder: Path):
    if not _has_tokenizer_files(folder):
        return None
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - transformers raises many kinds; each becomes one line
        raise SourceError(f"{folder}: cannot load the tokenizer ({type(err).__name__}: {_one_line(err)})") from None


def _prepare_tokenizer(tokenizer):
    """Right padding; pad = eos (or unk) when the tokenizer has no pad token."""
    if tokenizer is None:
        return None
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif getattr(tokenizer, "unk_token", None) is not None:
            tokenizer.pad_token = tokenizer.unk_token
    return tokenizer


def _convert(path: Path) -> Path:
    from .gguf_convert import convert_gguf

    try:
        return convert_gguf(path)
    except SpectrascopeError:
        raise
    except OSError as err:
        raise SourceError(
            f"{path}: cannot write the converted model to the cache ({_one_line(err)}); set SPECTRASCOPE_CACHE "
            "to a writable folder"
        ) from None


def _gguf_parts(path: Path) -> tuple[Path, Any]:
    """(converted HF folder, tokenizer or None) of a GGUF file; both cached."""
    from .tokenizer_cache import gguf_tokenizer

    folder = _convert(path)
    try:
        tokenizer = gguf_tokenizer(path, folder)
    except OSError as err:
        raise SourceError(f"{folder}: cannot write the tokenizer to the cache ({_one_line(err)})") from None
    return folder, tokenizer


def _resolve(name_or_path: str | Path) -> tuple[str, Path]:
    """(display name, existing path) for a bundled name or a path."""
    if isinstance(name_or_path, str) and name_or_path in BUNDLED:
        return name_or_path, bundled_path(name_or_path)
    try:
        path = Path(name_or_path).expanduser()
    except TypeError:
        raise SourceError(f"cannot load a model from a {type(name_or_path).__name__}: pass a name or a path") from None
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory (and not a bundled model name: {', '.join(BUNDLED)})")
    return (path.stem if path.is_file() else path.resolve().name), path


# ----------------------------------------------------------------------------- entry point


def load_model(
    name_or_path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    attn_implementation: str | None = "eager",
) -> LoadedModel:
    """Load a bundled model, the toy model, a Llama GGUF file or a local HF directory as a runnable model.

    Args:
        name_or_path: a bundled model name, ``toy-induction`` (the shipped toy model, a
            :class:`~spectrascope.mech.toy_models.ToyModel`), a ``.gguf`` file, a HF directory
            (config.json + safetensors), or a ``.safetensors`` file inside one.
        device: where to put the model ("cpu", "cuda", "cuda:1", ...).
        dtype: parameter dtype (torch dtype or its name).
        attn_implementation: passed to transformers ("eager" gives attention weights to hooks;
            None lets transformers choose).
    Raises:
        SpectrascopeError (SourceError, ModelNotInstalledError) with a one-line message.
    """
    dev, dt = resolve_device(device), _dtype(dtype)
    if is_toy_name(name_or_path):
        from ..mech.toy_models import load_toy_induction

        toy = load_toy_induction(device=dev)
        toy.hf.to(dt)
        return toy
    name, path = _resolve(name_or_path)
    tokenizer = None
    if path.is_dir():
        folder = path
        if not (folder / "config.json").exists():
            ggufs = sorted(folder.glob("*.gguf"))
            if len(ggufs) == 1:
                path = ggufs[0]
            elif len(ggufs) > 1:
                raise SourceError(f"{folder}: several .gguf files and no config.json; name one file")
    if path.is_file() and _is_gguf_file(path):
        folder, tokenizer = _gguf_parts(path)
    else:
        if path.is_file():
            suffix = path.suffix.lower()
            if suffix in PICKLE_SUFFIXES:
                raise _refuse_pickle(path)
            if suffix != ".safetensors":
                raise SourceError(
                    f"{path}: unknown model format (expected a HF directory, a .safetensors or a .gguf file)"
                )
            if not (path.parent / "config.json").exists():
                raise SourceError(
                    f"{path}: a lone .safetensors file has no config: pass its HF directory (config.json + safetensors)"
                )
            folder = path.parent
        if not _has_weights(folder):
            if _pickles(folder):
                raise _refuse_pickle(folder)
            raise SourceError(f"{folder}: no model weights found (no .safetensors files)")
        tokenizer = _load_tokenizer(folder)
    config = _read_config(folder)
    model, kind = _load_hf(folder, config, dt, attn_implementation)
    if model.device != dev:
        try:
            model = model.to(dev)
        except (RuntimeError, AssertionError) as err:
            raise OptionError(f"cannot move model {name!r} to {dev} ({_one_line(err)})") from None
    cfg = model.config
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    arch = ModelArch.from_config({**text_cfg.to_dict(), "architectures": config.get("architectures")}, kind)
    return LoadedModel(
        hf=model,
        tokenizer=_prepare_tokenizer(tokenizer),
        arch=arch,
        name=name,
        source_path=path.resolve(),
        hf_dir=folder.resolve(),
    )
