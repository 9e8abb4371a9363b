"""One model handle: whatever the caller has, as (HF module, tokenizer, spec, device, name).

Every public function that takes a model takes a :data:`ModelLike` and converts it with
:func:`as_model`:

- a :class:`ModelHandle` (returned as is);
- what :func:`~spectrascope.models.loaded.load_model` returns (a
  :class:`~spectrascope.models.loaded.LoadedModel`, or the toy model, a subclass);
- a bare Hugging Face model (``PreTrainedModel``; no tokenizer);
- a bundled model name, a path, or ``"toy-induction"`` (loaded with ``load_model``).

The family spec (:mod:`spectrascope.arch`) is resolved when the handle is made; a model of
an unknown family still gets a handle (its weights and forward work) and
:attr:`ModelHandle.spec` raises the one-line :class:`~spectrascope.errors.ArchitectureError`
only when something needs the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import torch
from torch import nn

from spectrascope.arch import ArchSpec, HeadGeometry, find_spec, read_geometry
from spectrascope.arch.spec import Capability, config_get
from spectrascope.errors import ArchitectureError, InputError, OptionError

if TYPE_CHECKING:
    from spectrascope.models.loaded import LoadedModel

ModelLike = Union["ModelHandle", "LoadedModel", nn.Module, str, Path]
"""What a public function accepts as a model (see the module docstring)."""


@dataclass(frozen=True)
class ModelHandle:
    """A model and what the tools need to know about it.

    Attributes:
        hf: the Hugging Face module (``PreTrainedModel``).
        tokenizer: its tokenizer, or None (bare modules, the toy model).
        name: the bundled name, folder name or class name.
        source: the object the handle was made from (a LoadedModel, the toy model, the module).
    """

    hf: nn.Module = field(repr=False)
    tokenizer: Any = field(repr=False)
    name: str
    source: Any = field(repr=False)
    _spec: ArchSpec | None = field(default=None, repr=False)
    _spec_error: str | None = field(default=None, repr=False)

    @property
    def config(self) -> Any:
        """The model's (text) config."""
        return text_config(self.hf)

    @property
    def spec(self) -> ArchSpec:
        """The family spec; :class:`ArchitectureError` (one line) for an unsupported family."""
        if self._spec is None:
            raise ArchitectureError(self._spec_error or f"{self.name}: no architecture spec")
        return self._spec

    @property
    def has_spec(self) -> bool:
        """Whether the family is registered (its spec resolved)."""
        return self._spec is not None

    @property
    def device(self) -> torch.device:
        """Where the parameters are (see :func:`device_of`)."""
        return device_of(self.hf)

    @property
    def geometry(self) -> HeadGeometry:
        """Head geometry under the family's keys; :class:`ArchitectureError` without attention."""
        spec = self.spec
        spec.require(Capability.ATTENTION, "head geometry")
        geometry = read_geometry(self.config, spec.attention)
        if geometry is None:
            raise ArchitectureError(f"{self.name}: the config gives no head counts ({spec.name})")
        return geometry

    @property
    def n_layers(self) -> int:
        """Number of blocks (the config's count under the family's keys)."""
        value = config_get(self.config, self.spec.n_layers_keys)
        if value is None:
            raise ArchitectureError(f"{self.name}: the config gives no layer count")
        return int(value)

    @property
    def bos_token_id(self) -> int | None:
        """BOS: the source's ``bos_token_id`` (toy model), else the config's, else the tokenizer's."""
        value = getattr(self.source, "bos_token_id", None)
        if value is None:
            value = getattr(self.config, "bos_token_id", None)
        if value is None and self.tokenizer is not None:
            value = self.tokenizer.bos_token_id
        return None if value is None else int(value)

    @property
    def is_causal_lm(self) -> bool:
        """Whether the model predicts the next token: a causal family with an LM head (logits over
        the vocabulary), as the loss, logit-difference and steering verbs need."""
        if not self.has_spec or not self.spec.causal:
            return False
        head = getattr(self.hf, "get_output_embeddings", lambda: None)()
        return head is not None

    def require_causal_lm(self, what: str) -> ModelHandle:
        """``self`` when it is a causal LM, else :class:`ArchitectureError` in one line saying so,
        before any work (encoders such as BERT / MiniLM, base models without an LM head)."""
        if self.is_causal_lm:
            return self
        spec = self.spec  # an unsupported family: its own one-line ArchitectureError
        if not spec.causal:
            why = f"an encoder ({spec.name}: each token sees the whole text, no next-token prediction)"
        else:
            why = "a model without a causal language-model head (no next-token logits)"
        raise ArchitectureError(f"{what} needs a causal language model; {self.name} is {why}")

    @property
    def token_ids(self) -> torch.Tensor | None:
        """The ordinary tokens of a toy model (its ``token_ids``), None otherwise."""
        return getattr(self.source, "token_ids", None)

    def tokenize(self, texts: list[str] | str, max_length: int = 512) -> dict[str, torch.Tensor]:
        """A padded batch (right padding, truncated to ``max_length`` tokens) on the model's device.

        Returns ``{"input_ids", "attention_mask", ...}`` as (batch, pos) tensors, plus whatever
        else the tokenizer gives (``token_type_ids`` for BERT), ready for ``self.hf(**batch)``.

        Raises:
            SpectrascopeError: no tokenizer, no texts, max_length < 1, or several texts and
                no pad token.
        """
        if self.tokenizer is None:
            raise InputError(
                f"model {self.name!r} has no tokenizer (no tokenizer files beside its weights): cannot tokenize text"
            )
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise OptionError("nothing to tokenize: the list of texts is empty")
        if not all(isinstance(t, str) for t in texts):
            raise OptionError("tokenize() takes a list of strings")
        if max_length < 1:
            raise OptionError(f"max_length must be at least 1 (got {max_length})")
        can_pad = self.tokenizer.pad_token_id is not None
        if len(texts) > 1 and not can_pad:
            raise ArchitectureError(f"the tokenizer of {self.name!r} has no pad or eos token: cannot batch texts")
        encoded = self.tokenizer(texts, padding=can_pad, truncation=True, max_length=max_length, return_tensors="pt")
        device = self.device
        return {k: v.to(device) for k, v in encoded.items()}


def text_config(hf: nn.Module) -> Any:
    """The config of a HF module, its text part for composite (multimodal) configs."""
    config = getattr(hf, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        return config.get_text_config()
    return config


def device_of(model: Any) -> torch.device:
    """The device of a model's parameters (CPU for a module without parameters).

    Accepts anything :func:`as_model` does without loading: a handle, a loaded model, a module.
    """
    hf = model.hf if isinstance(model, ModelHandle) else getattr(model, "hf", model)
    if not isinstance(hf, nn.Module):
        raise OptionError(f"expected a model, got {type(model).__name__}")
    parameter = next(hf.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


def _handle(hf: nn.Module, tokenizer: Any, name: str, source: Any) -> ModelHandle:
    from spectrascope.arch import supported_model_types

    config = text_config(hf)
    if config is None or not getattr(config, "model_type", None):
        error = (
            f"{type(hf).__name__} is not a Hugging Face transformer (no config.model_type); supported model "
            f"types: {', '.join(supported_model_types())}"
        )
        return ModelHandle(hf, tokenizer, name, source, None, error)
    try:
        spec = find_spec(config)
    except ArchitectureError as err:
        return ModelHandle(hf, tokenizer, name, source, None, str(err))
    if spec is None:
        error = (
            f"model type {config.model_type!r} is not supported ({type(hf).__name__}); supported model types: "
            f"{', '.join(supported_model_types())}"
        )
        return ModelHandle(hf, tokenizer, name, source, None, error)
    return ModelHandle(hf, tokenizer, name, source, spec)


def as_model(model: ModelLike) -> ModelHandle:
    """The :class:`ModelHandle` of anything :data:`ModelLike` (see the module docstring).

    Raises:
        SpectrascopeError: not a model (nor a name or path one loads from); load errors.
    """
    if isinstance(model, ModelHandle):
        return model
    if isinstance(model, str | Path):
        from spectrascope.models.loaded import load_model

        model = load_model(model)
    hf = getattr(model, "hf", None)
    if isinstance(hf, nn.Module):
        name = getattr(model, "name", None) or type(hf).__name__
        return _handle(hf, getattr(model, "tokenizer", None), str(name), model)
    if isinstance(model, nn.Module):
        return _handle(model, None, type(model).__name__, model)
    raise OptionError(
        f"expected a model (a loaded model, a Hugging Face module, a bundled name or a path), got {type(model).__name__}"
    )


def hf_module(model: ModelLike) -> nn.Module:
    """The Hugging Face module of anything :data:`ModelLike` (``as_model(model).hf``)."""
    return as_model(model).hf
