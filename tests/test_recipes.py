"""Each recipe of docs/ARCHITECTURE.md followed once: the extension point it names is enough.

Every extension is added at run time (``monkeypatch``) the way the recipe says to add it in the
source, and then reached through the public verbs, never through the extension directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from model_builders import minilm_llama_dir, tiny_llama

from spectrascope import analyze_weights, as_model, list_sites
from spectrascope.errors import ArchitectureError, InputError


def test_recipe_weight_metric_reaches_the_weights_table(monkeypatch):
    """spectra/metrics.py: a key added to what ``spectrum_metrics`` returns becomes a column."""
    from spectrascope.spectra import metrics
    from spectrascope.weights import analysis

    original = metrics.spectrum_metrics

    def with_top_share(evals, N, M, **kwargs):
        row = original(evals, N, M, **kwargs)
        return {**row, "top_share": float(np.max(evals) / np.sum(evals))}  # lambda_max / trace, unitless

    monkeypatch.setattr(metrics, "spectrum_metrics", with_top_share)
    monkeypatch.setattr(analysis, "spectrum_metrics", with_top_share)  # the name bound in the weights pipeline
    table = analyze_weights({"w": torch.eye(40)[:, :30] * torch.arange(1, 31, dtype=torch.float32)})
    row = table.iloc[0]
    evals = np.arange(1, 31, dtype=np.float64) ** 2
    assert row["top_share"] == pytest.approx(evals.max() / evals.sum())
    assert row["top_share"] == pytest.approx(row["lambda_max"] / 10 ** row["log_norm"])


def test_recipe_architecture_one_registry_line(monkeypatch):
    """arch/registry.py: a new model_type is unknown until its resolver is registered."""
    from spectrascope.arch import llama
    from spectrascope.arch.registry import REGISTRY

    hf = tiny_llama()
    hf.config.model_type = "recipe_llama"
    with pytest.raises(ArchitectureError):
        _ = as_model(hf).spec
    monkeypatch.setitem(REGISTRY, "recipe_llama", llama.spec)
    sites = list_sites(hf)
    assert "blocks.0.hook_resid_post" in sites and "blocks.1.attn.hook_z" in sites


def test_recipe_component_kind_one_class():
    """mech/components.py: ``@register("neuron")`` makes ``neuron:L.I`` ablatable by name."""
    from spectrascope import ablate
    from spectrascope.mech.components import COMPONENT_KINDS, ActivationComponent, parse_component, register
    from spectrascope.trace.sites import SiteKind

    @register("neuron")
    @dataclass(frozen=True)
    class Neuron(ActivationComponent):
        """MLP hidden unit ``index`` of layer ``layer`` (its slice of ``mlp.hook_post``)."""

        layer: int
        index: int
        site_kind: ClassVar[SiteKind] = SiteKind.MLP_POST

        @property
        def name(self) -> str:
            return f"neuron:{self.layer}.{self.index}"

        def part(self, activation: torch.Tensor) -> torch.Tensor:
            return activation[:, :, self.index]

        @classmethod
        def parse(cls, rest: str) -> Neuron:
            layer, index = rest.split(".")
            return cls(int(layer), int(index))

    try:
        assert parse_component("neuron:1.5") == Neuron(1, 5)
        hf = tiny_llama().eval()
        ids = torch.randint(0, hf.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
        seen = {}

        def record(module, args, kwargs):
            seen["down_input"] = args[0].detach().clone()

        down = hf.model.layers[1].mlp.down_proj
        with torch.no_grad():
            clean = hf(ids).logits
            with ablate(hf, "neuron:1.5"):
                handle = down.register_forward_pre_hook(record, with_kwargs=True)  # runs after the edit's hook
                try:
                    ablated = hf(ids).logits
                finally:
                    handle.remove()
        assert torch.all(seen["down_input"][:, :, 5] == 0)  # the unit is zeroed where down_proj reads it
        assert not torch.allclose(clean, ablated)
    finally:
        COMPONENT_KINDS.pop("neuron", None)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return minilm_llama_dir(tmp_path_factory.mktemp("recipe_model"), special_ids=False)


def test_recipe_study_stage_and_report_section(monkeypatch, tmp_path, tiny_model_dir):
    """study/stages/registry.py + report/sections.py: a stage that reads the weights table and a
    section that shows its table, reached through ``run_study``."""
    from spectrascope.report import study_report
    from spectrascope.report.html import Section
    from spectrascope.study import StudyBudget, run_study, runner
    from spectrascope.study.stage import Stage

    def count_roles(ctx) -> dict[str, pd.DataFrame]:
        weights = pd.read_parquet(ctx.out / "weights" / "weights.parquet")
        fitted = weights[weights["status"] == "success"]
        return {"role_counts": fitted.groupby("role").size().rename("n").reset_index()}

    def role_counts_section(tables, model: str) -> Section | None:
        counts = tables.get("recipe", "role_counts")
        if counts is None:
            return None
        return Section(
            "recipe", "Matrices per role", [f"{int(counts['n'].sum())} fitted matrices of {model}."], tables=[counts]
        )

    stage = Stage("recipe", ("weights/weights",), ("role_counts",), count_roles)
    monkeypatch.setattr(runner, "STAGES", (*runner.STAGES, stage))
    monkeypatch.setitem(runner.BY_NAME, "recipe", stage)
    monkeypatch.setattr(study_report, "SECTIONS", [*study_report.SECTIONS, role_counts_section])
    budget = StudyBudget.small()

    with pytest.raises(InputError, match="run the 'weights' stage first"):  # inputs checked before any work
        run_study(str(tiny_model_dir), tmp_path / "fresh", stages=["recipe"], budget=budget)

    out = tmp_path / "study"
    report = run_study(str(tiny_model_dir), out, stages=["weights", "recipe"], budget=budget)
    counts = pd.read_parquet(out / "recipe" / "role_counts.parquet")
    assert (out / "recipe" / "role_counts.csv").exists()
    assert dict(zip(counts["role"], counts["n"], strict=True))["q"] == 2  # one q matrix per layer
    assert "Matrices per role" in report.read_text()
