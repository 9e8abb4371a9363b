"""GGUF (llama.cpp) tensor names and layouts -> Hugging Face names and layouts.

Results are reported under HF names for every format, so a GGUF and a safetensors copy of the
same model give the same rows. The name tables are the families' (``ArchSpec.gguf``, see
:mod:`spectrascope.arch`); llama.cpp's ``general.architecture`` picks the family
(:func:`spectrascope.arch.spec_for_gguf`). llama.cpp's converter also permutes the rows of q
and k inside each head (to interleave the rotary halves) for arch ``llama``;
:func:`unpermute_rotary` undoes it so a dequantized tensor equals the HF tensor element for
element.
"""

from __future__ import annotations

import re

import numpy as np

from spectrascope.arch import spec_for_gguf

_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")


def hf_name(gguf_name: str, arch: str) -> str:
    """The HF name of a GGUF tensor for a family with GGUF names; other names unchanged."""
    spec = spec_for_gguf(arch)
    names = spec.gguf if spec is not None else None
    if names is None:
        return gguf_name
    if gguf_name in names.globals:
        return names.globals[gguf_name]
    m = _BLOCK_RE.match(gguf_name)
    if m and m.group(2) in names.block:
        return f"{names.prefix}.{m.group(1)}.{names.block[m.group(2)]}.{m.group(3)}"
    return gguf_name


def is_rotary_permuted(arch: str) -> bool:
    """Whether llama.cpp's converter permuted the q/k rows of files of this architecture."""
    spec = spec_for_gguf(arch)
    return bool(spec is not None and spec.gguf is not None and spec.gguf.rotary_permuted)


def rotary_permute(W: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's permutation of q/k rows (HF layout -> GGUF layout), shape (n_heads*hd, d)."""
    rows = W.shape[0]
    return W.reshape(n_heads, 2, rows // n_heads // 2, *W.shape[1:]).swapaxes(1, 2).reshape(W.shape)


def unpermute_rotary(W: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of :func:`rotary_permute` (GGUF layout -> HF layout)."""
    rows = W.shape[0]
    return W.reshape(n_heads, rows // n_heads // 2, 2, *W.shape[1:]).swapaxes(1, 2).reshape(W.shape)
