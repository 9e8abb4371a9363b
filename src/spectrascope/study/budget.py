"""Budgets of a study: how much data each stage reads. Defaults fit 2 CPU cores in < 15 min."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import SpectrascopeError

ABLATION_MODES = ("mean", "zero")


@dataclass(frozen=True)
class StudyBudget:
    """Token and component budgets of ``spectrascope study``.

    Attributes:
        corpora: domains (comma-separated built-in names and/or paths).
        activation_tokens: tokens per domain for activation spectra (all resid_post sites).
        energy_tokens: tokens per domain for token energies.
        overlap_tokens: tokens per domain for the matrix-input covariances (eigenmode overlap).
        loss_tokens: tokens per domain for each domain-loss evaluation in the ablation comparison.
        ablation_layers: how many evenly spaced layers get the full spectral vs head ablation
            comparison (every layer gets MLP and attention-block ablation).
        top_k: singular directions removed by the "drop_top" spectral edit.
        cka_tokens: tokens (mixed domains) for layer-to-layer CKA.
        head_sequences: repeated random sequences for head scores and the induction-loss sweep.
        ablation_mode: how heads and blocks are removed: "mean" (their mean activation over a
            reference batch: other repeated sequences for the induction sweep, all domains
            pooled for the domain losses) or "zero". Zero ablation takes the model off its
            distribution and over-weights early heads.
        lens_prompt, lens_target: the logit-lens example.
        attribution_text: the energy-vs-attribution example.
    """

    corpora: str = "code,python-docs,legal,calendar,arithmetic,geography"
    activation_tokens: int = 1024
    energy_tokens: int = 256
    overlap_tokens: int = 512
    loss_tokens: int = 128
    ablation_layers: int = 2
    top_k: int = 8
    cka_tokens: int = 512
    head_sequences: int = 4
    ablation_mode: str = "mean"
    lens_prompt: str = "The capital of France is"
    lens_target: str = " Paris"
    attribution_text: str = "The capital of France is Paris, and the capital of Italy is Rome."
    seq_len: int = 128
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ablation_mode not in ABLATION_MODES:
            raise SpectrascopeError(f"unknown ablation mode {self.ablation_mode!r}: use {' or '.join(ABLATION_MODES)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def small(cls) -> "StudyBudget":
        """Tiny budgets for tests and smoke runs."""
        return cls(activation_tokens=128, energy_tokens=32, overlap_tokens=64, loss_tokens=48, ablation_layers=1,
                   top_k=2, cka_tokens=64, head_sequences=2)
