"""GGUF sources: tensors dequantized one at a time with the ``gguf`` package."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SourceError
from .gguf_names import hf_name, is_rotary_permuted, unpermute_rotary
from .tensor_source import SourceSpec, TensorInfo

GGUF_MAGIC = b"GGUF"
ROTARY_TENSORS = ("q_proj.weight", "k_proj.weight", "q_proj.bias", "k_proj.bias")


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def gguf_config(reader) -> dict:
    """An HF-style config dict from GGUF metadata (Llama-family keys)."""
    arch = _field(reader, "general.architecture", "unknown")
    get = lambda k, d=None: _field(reader, f"{arch}.{k}", d)
    names = {t.name for t in reader.tensors}
    config = {
        "model_type": arch,
        "num_hidden_layers": get("block_count"),
        "hidden_size": get("embedding_length"),
        "intermediate_size": get("feed_forward_length"),
        "num_attention_heads": get("attention.head_count"),
        "num_key_value_heads": get("attention.head_count_kv", get("attention.head_count")),
        "vocab_size": get("vocab_size"),
        "max_position_embeddings": get("context_length"),
        "tie_word_embeddings": "output.weight" not in names,
        "gguf_file_type": _field(reader, "general.file_type"),
        "name": _field(reader, "general.name", ""),
    }
    return {k: v for k, v in config.items() if v is not None}


class GGUFSource:
    """Tensors of a GGUF file under HF names, dequantized to float32 on load."""

    def __init__(self, path: str | Path):
        import gguf

        self.path = Path(path)
        self.description = f"gguf: {self.path}"
        try:
            with open(self.path, "rb") as fh:
                if fh.read(4) != GGUF_MAGIC:
                    raise SourceError(f"{self.path}: not a GGUF file (bad magic bytes)")
            self._reader = gguf.GGUFReader(str(self.path))
        except SourceError:
            raise
        except Exception as err:  # noqa: BLE001 - gguf raises many kinds on bad files; each becomes one line
            raise SourceError(f"{self.path}: corrupt or truncated GGUF file ({err})") from None
        self._config = gguf_config(self._reader)
        self._arch = self._config["model_type"]
        self._rotary_permuted = is_rotary_permuted(self._arch)
        self._by_name = {}
        self._infos = []
        for t in self._reader.tensors:
            name = hf_name(t.name, self._arch)
            self._by_name[name] = t
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            self._infos.append(TensorInfo(name, shape, t.tensor_type.name))

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def load(self, name: str) -> np.ndarray:
        import gguf

        tensor = self._by_name.get(name)
        if tensor is None:
            raise SourceError(f"no tensor named {name!r} in {self.description}")
        try:
            W = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        except Exception as err:  # noqa: BLE001 - gguf raises many kinds on bad data; each becomes one line
            raise SourceError(f"{self.path}: cannot dequantize {tensor.name} ({err})") from None
        W = np.asarray(W, dtype=np.float32).reshape(self._infos_shape(name))
        if self._rotary_permuted and name.endswith(ROTARY_TENSORS):
            heads_key = "num_attention_heads" if "q_proj" in name else "num_key_value_heads"
            W = unpermute_rotary(W, int(self._config[heads_key]))
        return W

    def _infos_shape(self, name: str) -> tuple[int, ...]:
        t = self._by_name[name]
        return tuple(int(d) for d in reversed(t.shape.tolist()))

    def config(self) -> dict:
        return dict(self._config)

    def spec(self) -> SourceSpec:
        return SourceSpec("gguf", (str(self.path),), self._config)
