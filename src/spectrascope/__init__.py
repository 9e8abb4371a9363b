"""spectrascope: weight spectra, activation spectra and mechanisms of LLMs in one report.

The public API is flat (``spectrascope.analyze_weights``, ``spectrascope.run_with_cache``
...); names are imported on first use so that ``import spectrascope`` stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # weights
    "analyze_weights": "spectrascope.weights.api",
    "analyze_heads": "spectrascope.weights.api",
    "open_source": "spectrascope.models.open_source",
    "list_models": "spectrascope.models.zoo",
    # models
    "load_model": "spectrascope.models.loaded",
    "LoadedModel": "spectrascope.models.loaded",
    "as_model": "spectrascope.models.handle",
    "ModelHandle": "spectrascope.models.handle",
    # architectures
    "spec_for": "spectrascope.arch",
    "capability_table": "spectrascope.arch.capabilities",
    # activations
    "run_with_cache": "spectrascope.trace",
    "hooks": "spectrascope.trace",
    "list_sites": "spectrascope.trace",
    "analyze_activations": "spectrascope.activations.api",
    "text_energy": "spectrascope.activations.energy_profile",
    "expert_routing": "spectrascope.activations.expert_routing",
    # mechanisms
    "logit_lens": "spectrascope.mech.logit_lens",
    "patch": "spectrascope.mech.patching",
    "patch_sweep_layers_positions": "spectrascope.mech.patching",
    "patch_sweep_heads": "spectrascope.mech.patching",
    "logit_diff": "spectrascope.mech.patching",
    "attribution_sweep_layers_positions": "spectrascope.mech.attribution",
    "attribution_sweep_heads": "spectrascope.mech.attribution",
    "compare_attribution": "spectrascope.mech.attribution",
    "patching_comparison": "spectrascope.mech.attribution",
    "head_scores": "spectrascope.mech.head_scores",
    "ablate": "spectrascope.mech.ablation",
    "ablation_sweep": "spectrascope.mech.ablation_sweep",
    "collect_activations": "spectrascope.mech.activation_cache",
    "probe_layers": "spectrascope.mech.probes",
    "calendar_experiment": "spectrascope.mech.circular",
    "steering_vector": "spectrascope.mech.steering",
    "steer": "spectrascope.mech.steering",
    "steering_effect": "spectrascope.mech.steering",
    # statistics
    "cka": "spectrascope.bridge.cka",
    "bh_qvalues": "spectrascope.stats.multiple_testing",
    # sparse autoencoders
    "train_sae": "spectrascope.sae.train",
    "load_sae": "spectrascope.sae.saelens_io",
    "save_sae": "spectrascope.sae.saelens_io",
    "evaluate_sae": "spectrascope.sae.evaluate",
    "sae_features": "spectrascope.sae.features",
    "steer_feature": "spectrascope.sae.steering",
    # circuits
    "discover_circuit": "spectrascope.circuits.discover",
    "attribute_edges": "spectrascope.circuits.eap",
    "prompt_interactions": "spectrascope.circuits.interactions",
    # corpora
    "list_corpora": "spectrascope.corpora",
    "load_corpus": "spectrascope.corpora",
    # learning dynamics
    "track": "spectrascope.dynamics.track",
    "change_points": "spectrascope.dynamics.changepoints",
    "checkpoint_series": "spectrascope.dynamics.series",
    "run_experiment": "spectrascope.dynamics.experiment",
    # study
    "run_study": "spectrascope.study",
}

__all__ = [name for name in sorted(_EXPORTS)]  # a list display, as linters expect of __all__


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'spectrascope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
