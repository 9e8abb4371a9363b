"""The registry: ``config.model_type`` -> the family resolver that gives its :class:`ArchSpec`.

A resolver reads the config attributes of its family that change the forward pass and
returns the matching spec (refusing, per capability, what it cannot do). Adding a family =
one file under ``spectrascope/arch/``, one line here, one entry in the test of the families
(``tests/arch/test_families.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spectrascope.arch import (
    bert,
    falcon,
    gemma,
    gpt2,
    gpt_neox,
    gptj,
    llama,
    mamba,
    mixtral,
    olmo2,
    phi,
    phi3,
    qwen,
    stablelm,
    starcoder2,
)
from spectrascope.arch.spec import ArchSpec, model_type_of
from spectrascope.errors import ArchitectureError

Resolver = Callable[[Any], ArchSpec]
"""``resolver(config) -> ArchSpec`` (config: a dict or a transformers config)."""

REGISTRY: dict[str, Resolver] = {
    "llama": llama.spec,
    "mistral": llama.spec,
    "mixtral": mixtral.spec,
    "qwen2": qwen.qwen2,
    "qwen3": qwen.qwen3,
    "qwen2_moe": qwen.qwen2_moe,
    "qwen3_moe": qwen.qwen3_moe,
    "gemma": gemma.gemma,
    "gemma2": gemma.gemma2,
    "gemma3_text": gemma.gemma3_text,
    "phi3": phi3.spec,
    "phi": phi.spec,
    "gpt2": gpt2.spec,
    "gpt_neox": gpt_neox.spec,
    "gptj": gptj.spec,
    "olmo2": olmo2.spec,
    "stablelm": stablelm.spec,
    "starcoder2": starcoder2.spec,
    "bert": bert.spec,
    "roberta": bert.spec,
    "falcon": falcon.spec,
    "mamba": mamba.spec,
}
"""``config.model_type`` -> resolver."""

GGUF_ARCHITECTURES: dict[str, str] = {
    "llama": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
}
"""llama.cpp ``general.architecture`` -> ``model_type`` whose spec names its tensors."""


def supported_model_types() -> list[str]:
    """Every registered ``model_type``, sorted."""
    return sorted(REGISTRY)


def find_spec(config: Any) -> ArchSpec | None:
    """The spec of a config (dict or transformers config), or None for an unknown family.

    Raises:
        ArchitectureError: a known family whose config its resolver refuses outright.
    """
    resolver = REGISTRY.get(model_type_of(config))
    return None if resolver is None else resolver(config)


def spec_for(config: Any) -> ArchSpec:
    """The spec of a config; :class:`ArchitectureError` (one line) for an unknown family."""
    spec = find_spec(config)
    if spec is None:
        model_type = model_type_of(config)
        what = f"model type {model_type!r}" if model_type else "a config without model_type"
        raise ArchitectureError(f"{what} is not supported; supported model types: {', '.join(supported_model_types())}")
    return spec


def spec_for_model_type(model_type: str) -> ArchSpec:
    """The spec of ``model_type`` with its config's defaults (e.g. ``split_projections("gpt2", ...)``)."""
    return spec_for({"model_type": model_type})


def spec_for_gguf(architecture: str) -> ArchSpec | None:
    """The spec whose GGUF names apply to a llama.cpp ``general.architecture``, or None."""
    model_type = GGUF_ARCHITECTURES.get(architecture)
    return None if model_type is None else spec_for_model_type(model_type)
