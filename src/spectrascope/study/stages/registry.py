"""The stages of a study, in order."""

from __future__ import annotations

from ...circuits import study as circuits
from ...sae import study as features
from ..stage import Stage
from . import activations, bridge, mechanisms, weights

STAGES: tuple[Stage, ...] = (
    Stage("weights", (), ("weights", "weights_heads"), weights.run),
    Stage(
        "activations",
        (),
        (
            "activations",
            "energy",
            "massive_activations",
            "overlap",
            "overlap_modes",
            "cka",
            "cka_null",
            "cka_adjacent",
            "energy_tokens",
            "energy_agreement",
        ),
        activations.run,
    ),
    Stage("mechanisms", (), ("head_scores", "lens", "ablation_heads"), mechanisms.run),
    Stage(
        "bridge",
        ("weights/weights", "weights/weights_heads", "activations/activations", "mechanisms/ablation_heads"),
        ("layer_damage", "ablation_domains", "layers", "correlation", "alignment"),
        bridge.run,
    ),
    Stage(
        "features",
        (),
        features.PRODUCES,
        features.run,
        enabled=lambda budget: budget.features is not None,
    ),
    Stage(
        "circuits",
        (),
        circuits.PRODUCES,
        circuits.run,
        enabled=lambda budget: budget.circuits is not None,
        default=False,
    ),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
DEFAULT_STAGE_NAMES = tuple(s.name for s in STAGES if s.default)
"""What ``spectrascope study`` runs without ``--stages``; ``--stages all`` runs every stage."""
BY_NAME = {s.name: s for s in STAGES}
