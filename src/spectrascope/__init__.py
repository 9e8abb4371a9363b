"""spectrascope: weight spectra, activation spectra and mechanisms of LLMs in one report.

The public API is flat (``spectrascope.analyze_weights``, ``spectrascope.run_with_cache``
...); names are imported on first use so that ``import spectrascope`` stays fast. Type
checkers and IDEs see them through the ``TYPE_CHECKING`` imports below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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
    # nouns the verbs take and return
    "WeightsOptions": "spectrascope.weights.options",
    "StudyBudget": "spectrascope.study",
    "Corpus": "spectrascope.corpora",
    "Metric": "spectrascope.mech.metrics",
    "NextTokenLoss": "spectrascope.mech.metrics",
    "LogitDifference": "spectrascope.mech.metrics",
    "corpus_loss": "spectrascope.mech.metrics",
    "logit_difference": "spectrascope.mech.metrics",
    "AblationMode": "spectrascope.mech.ablation",
    "Component": "spectrascope.mech.components",
    "parse_component": "spectrascope.mech.components",
    "SparseAutoencoder": "spectrascope.sae.base",
    "Task": "spectrascope.circuits.tasks",
    "Circuit": "spectrascope.circuits.discover",
    "SpectrascopeError": "spectrascope.errors",
}

if TYPE_CHECKING:  # the flat API for type checkers and IDEs; kept equal to _EXPORTS by tests/test_public_api.py
    from .activations.api import analyze_activations as analyze_activations
    from .activations.energy_profile import text_energy as text_energy
    from .activations.expert_routing import expert_routing as expert_routing
    from .arch import spec_for as spec_for
    from .arch.capabilities import capability_table as capability_table
    from .bridge.cka import cka as cka
    from .circuits.discover import Circuit as Circuit
    from .circuits.discover import discover_circuit as discover_circuit
    from .circuits.eap import attribute_edges as attribute_edges
    from .circuits.interactions import prompt_interactions as prompt_interactions
    from .circuits.tasks import Task as Task
    from .corpora import Corpus as Corpus
    from .corpora import list_corpora as list_corpora
    from .corpora import load_corpus as load_corpus
    from .dynamics.changepoints import change_points as change_points
    from .dynamics.experiment import run_experiment as run_experiment
    from .dynamics.series import checkpoint_series as checkpoint_series
    from .dynamics.track import track as track
    from .errors import SpectrascopeError as SpectrascopeError
    from .mech.ablation import AblationMode as AblationMode
    from .mech.ablation import ablate as ablate
    from .mech.ablation_sweep import ablation_sweep as ablation_sweep
    from .mech.activation_cache import collect_activations as collect_activations
    from .mech.attribution import attribution_sweep_heads as attribution_sweep_heads
    from .mech.attribution import attribution_sweep_layers_positions as attribution_sweep_layers_positions
    from .mech.attribution import compare_attribution as compare_attribution
    from .mech.attribution import patching_comparison as patching_comparison
    from .mech.circular import calendar_experiment as calendar_experiment
    from .mech.components import Component as Component
    from .mech.components import parse_component as parse_component
    from .mech.head_scores import head_scores as head_scores
    from .mech.logit_lens import logit_lens as logit_lens
    from .mech.metrics import LogitDifference as LogitDifference
    from .mech.metrics import Metric as Metric
    from .mech.metrics import NextTokenLoss as NextTokenLoss
    from .mech.metrics import corpus_loss as corpus_loss
    from .mech.metrics import logit_difference as logit_difference
    from .mech.patching import logit_diff as logit_diff
    from .mech.patching import patch as patch
    from .mech.patching import patch_sweep_heads as patch_sweep_heads
    from .mech.patching import patch_sweep_layers_positions as patch_sweep_layers_positions
    from .mech.probes import probe_layers as probe_layers
    from .mech.steering import steer as steer
    from .mech.steering import steering_effect as steering_effect
    from .mech.steering import steering_vector as steering_vector
    from .models.handle import ModelHandle as ModelHandle
    from .models.handle import as_model as as_model
    from .models.loaded import LoadedModel as LoadedModel
    from .models.loaded import load_model as load_model
    from .models.open_source import open_source as open_source
    from .models.zoo import list_models as list_models
    from .sae.base import SparseAutoencoder as SparseAutoencoder
    from .sae.evaluate import evaluate_sae as evaluate_sae
    from .sae.features import sae_features as sae_features
    from .sae.saelens_io import load_sae as load_sae
    from .sae.saelens_io import save_sae as save_sae
    from .sae.steering import steer_feature as steer_feature
    from .sae.train import train_sae as train_sae
    from .stats.multiple_testing import bh_qvalues as bh_qvalues
    from .study import StudyBudget as StudyBudget
    from .study import run_study as run_study
    from .trace import hooks as hooks
    from .trace import list_sites as list_sites
    from .trace import run_with_cache as run_with_cache
    from .weights.api import analyze_heads as analyze_heads
    from .weights.api import analyze_weights as analyze_weights
    from .weights.options import WeightsOptions as WeightsOptions

__all__ = [name for name in sorted(_EXPORTS)]  # a list display, as linters expect of __all__


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'spectrascope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
