"""Budgets of a study: how much data each statistic reads, by name, with three presets.

The defaults are set by the statistics they feed (DESIGN.md section 7), then the work is
arranged to fit 2 CPU cores (one pass per domain feeding every activation statistic; exact
ablations packed and resumed at the edited layer):

- ``activation_tokens`` = 4,608 per domain = 8 x d_model of SmolLM2 (576): a covariance of
  dimension d from n tokens has a sample ESD that is Marchenko-Pastur noise of ratio d / n;
  at n / d = 8 the noise edge sits at (1 + 1/sqrt 8)^2 = 1.83x the mean eigenvalue, so
  the power-law tail and the effective rank measure the domain, not the sample. Tables give
  n / d beside every activation spectrum.
- ``loss_tokens`` = 4,096 target tokens (predicted tokens: a text's first is not) per domain
  from >= 16 texts (33 texts of 128 tokens, ~450 arithmetic texts): each domain loss of the
  per-domain ablations; intervals are over texts, so the number of texts matters.
- ``head_sequences`` = 32 repeated random sequences for head scores and for confirming the
  most damaging heads of the induction sweep; ``sweep_sequences`` (3) for the exact sweep of
  every head that picks them (a screen: what it picks is re-measured on fresh sequences).
- ``cka_tokens`` = 4,096 pooled tokens for CKA (debiased; ~0 for unrelated representations).
- ``layer_sweep_tokens`` = 720 pooled target tokens (120 per domain: one 128-token text, or
  ~14 short ones) for the exact mean ablation of every attention and MLP block (the causal
  importance the spectra are correlated with; the correlation reads the pooled damage, over ~45
  texts). It was 1,536 until the study had to fit 12 minutes on a slower 2-core machine (see
  the README's "Limits").

Presets: :meth:`StudyBudget.small` (tests, smoke runs; statistics not meant to be read),
the default, and :meth:`StudyBudget.large` (more texts and edits; tens of minutes).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from enum import Enum

from ..circuits.study import CircuitBudget
from ..corpora import DEFAULT_CORPORA
from ..errors import OptionError
from ..mech.ablation import AblationMode
from ..sae.study import SaeBudget


class BudgetPreset(str, Enum):
    """The named budgets of ``spectrascope study --budget``."""

    SMALL = "small"
    """Tiny: a smoke run in a few minutes (tests); intervals wide, findings not meant to be read."""
    DEFAULT = "default"
    """Fits the statistics (see the module docstring) and ~12 minutes on 2 CPU cores for SmolLM2-135M."""
    LARGE = "large"
    """Twice the tokens, more edits and layers: tens of minutes."""


TOKENS_PER_DIMENSION = 8
"""The fewest statistic tokens per residual dimension of an activation covariance (n / d)."""

STATISTIC_MINIMUMS = {"cka_tokens": 4096, "loss_tokens": 4096, "min_loss_texts": 16, "head_sequences": 32}
"""The fewest tokens, texts or sequences each statistic reads before its intervals mean what
they say (the module docstring; ``activation_tokens`` is :data:`TOKENS_PER_DIMENSION` x d)."""

OPTIONAL_COUNTS = ("ig_steps",)
"""Budget counts where 0 means "skip" (every other count must be at least 1)."""


@dataclass(frozen=True)
class StudyBudget:
    """Token, sequence and edit budgets of ``spectrascope study`` (see the module docstring).

    Attributes:
        corpora: the domains (comma-separated built-in names and/or paths).
        seq_len: tokens per text (texts are truncated).
        calibration_tokens: tokens per domain of a separate calibration sample (the pooled
            reference Gaussian of the energies, massive-channel detection, the mean-ablation
            reference), disjoint from the texts the statistics are measured on.
        activation_tokens: statistic tokens per domain of the activation pass (spectra,
            energies, eigenmode overlap).
        cka_tokens: pooled tokens (equal shares of the domains) for CKA between layers.
        control_tokens: tokens of the random-token loss of the per-domain ablations (the
            activation controls, random tokens and randomized weights, take
            ``activation_tokens``: their spectra are compared at the domains' n / d).
        loss_tokens: target tokens per domain of each domain loss in the per-domain ablations.
        min_loss_texts: the fewest texts a domain loss may come from.
        layer_sweep_tokens: pooled target tokens of the exact ablation of every attention and MLP block.
        ablation_layers: layers with the per-domain spectral vs component comparison;
            empty = the middle layer.
        top_k: singular directions removed by the "drop_top" spectral edit.
        spectral_edits: the spectral edits of the compared layer's output projections: "tail"
            (keep only the power-law tail), "bulk" (keep only the bulk), "drop_top" (remove the
            top ``top_k`` directions).
        head_sequences: repeated random sequences for head scores and for confirming heads.
        sweep_sequences: sequences of the exact sweep of every head (the screen; its candidates are
            re-measured on ``head_sequences`` fresh ones).
        confirm_heads: heads re-measured on ``head_sequences``: the most damaging of the sweep
            and the top induction and previous-token heads.
        attribution_texts: texts of the energy-vs-attribution comparison.
        ig_steps: path points of integrated gradients in that comparison (0: gradient x input
            only; from a zero baseline IG did not converge on SmolLM2-135M, see
            :mod:`spectrascope.bridge.energy_attribution`).
        n_boot: bootstrap resamples of every interval.
        ablation_mode: how heads and blocks are removed (mean: their mean over the
            calibration texts, the attention sink kept apart; or zero).
        lens_prompt, lens_target: the logit-lens example.
        features: the sparse-autoencoder stage's budget (:class:`~spectrascope.sae.study.SaeBudget`);
            None skips the stage.
        circuits: the circuits stage's budget (:class:`~spectrascope.circuits.study.CircuitBudget`);
            None skips the stage.
    """

    corpora: str = DEFAULT_CORPORA
    seq_len: int = 128
    calibration_tokens: int = 768
    activation_tokens: int = 4608
    cka_tokens: int = 4096
    control_tokens: int = 2048
    loss_tokens: int = 4096
    min_loss_texts: int = 16
    layer_sweep_tokens: int = 720
    ablation_layers: tuple[int, ...] = ()
    top_k: int = 8
    spectral_edits: tuple[str, ...] = ("tail", "bulk")
    head_sequences: int = 32
    sweep_sequences: int = 3
    confirm_heads: int = 12
    attribution_texts: int = 24
    ig_steps: int = 0
    n_boot: int = 1000
    ablation_mode: AblationMode = AblationMode.MEAN
    lens_prompt: str = "The capital of France is"
    lens_target: str = " Paris"
    features: SaeBudget | None = field(
        default_factory=lambda: SaeBudget(store_tokens=20_000, train_tokens=60_000, random_draws=3)
    )
    circuits: CircuitBudget | None = field(default_factory=CircuitBudget)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "ablation_mode", AblationMode(self.ablation_mode))
        except ValueError:
            modes = " or ".join(m.value for m in AblationMode if m is not AblationMode.RESAMPLE)
            raise OptionError(
                f"unknown ablation mode {self.ablation_mode!r} ({{option}}): use {modes}", option="ablation_mode"
            ) from None
        if self.ablation_mode is AblationMode.RESAMPLE:
            raise OptionError(
                "{option}: the study ablates by mean or zero (resample needs inputs of one shape)",
                option="ablation_mode",
            )
        object.__setattr__(self, "ablation_layers", tuple(int(x) for x in self.ablation_layers))
        if isinstance(self.features, dict):
            object.__setattr__(self, "features", SaeBudget(**self.features))
        if isinstance(self.circuits, dict):
            object.__setattr__(self, "circuits", CircuitBudget(**self.circuits))
        object.__setattr__(self, "spectral_edits", tuple(str(x) for x in self.spectral_edits))
        unknown = [e for e in self.spectral_edits if e not in ("tail", "bulk", "drop_top")]
        if unknown:
            raise OptionError(f"unknown spectral edit(s) {', '.join(unknown)}: use tail, bulk or drop_top")
        for f in fields(self):
            value = getattr(self, f.name)
            least = 0 if f.name in OPTIONAL_COUNTS else 1
            if isinstance(value, int) and not isinstance(value, bool) and value < least:
                raise OptionError(f"budget {{option}} must be at least {least} (got {value})", option=f.name)
        if self.seq_len < 8:
            raise OptionError(f"budget seq_len must be at least 8 tokens (got {self.seq_len})")
        if not self.corpora.strip():
            raise OptionError("budget {option} is empty: give at least one domain", option="corpora")

    def edited_layers(self, n_layers: int) -> list[int]:
        """The layers of the per-domain ablations: :attr:`ablation_layers`, else the middle one."""
        return list(self.ablation_layers) or [n_layers // 2]

    def shortfalls(self, d_model: int | None = None) -> list[str]:
        """The budgets below what their statistics need, each as "name value (minimum)".

        Args:
            d_model: the dimension d of the widest activation covariance (the residual width
                at the study's sites); with it, ``activation_tokens`` is checked against
                :data:`TOKENS_PER_DIMENSION` x d (SmolLM2-135M: 8 x 576 = 4,608).

        Returns:
            An empty list for the default budget on SmolLM2; the small preset lists every one.
        """
        wanted = dict(STATISTIC_MINIMUMS)
        if d_model:
            wanted = {"activation_tokens": TOKENS_PER_DIMENSION * d_model, **wanted}
        return [
            f"{name} {getattr(self, name):,} ({least:,})"
            for name, least in wanted.items()
            if getattr(self, name) < least
        ]

    def to_dict(self) -> dict:
        """Every budget by name, as JSON reads it back (enums as their values, tuples as lists at
        every depth): a fingerprint recorded in ``done.json`` compares equal to a fresh one."""
        out = asdict(self)
        out["ablation_mode"] = self.ablation_mode.value
        return json.loads(json.dumps(out))

    @classmethod
    def from_dict(cls, values: dict) -> StudyBudget:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise OptionError(f"unknown budget(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**values)

    @classmethod
    def preset(cls, name: BudgetPreset | str) -> StudyBudget:
        """The budget called ``name`` (small, default or large)."""
        try:
            preset = BudgetPreset(name)
        except ValueError:
            raise OptionError(f"unknown {{option}} {name!r}: use small, default or large", option="budget") from None
        return {BudgetPreset.SMALL: cls.small, BudgetPreset.DEFAULT: cls, BudgetPreset.LARGE: cls.large}[preset]()

    @classmethod
    def small(cls) -> StudyBudget:
        """Tiny budgets for tests and smoke runs (not enough for the statistics)."""
        return cls(
            calibration_tokens=128,
            activation_tokens=256,
            cka_tokens=128,
            control_tokens=64,
            loss_tokens=96,
            min_loss_texts=2,
            layer_sweep_tokens=96,
            top_k=2,
            head_sequences=4,
            sweep_sequences=2,
            confirm_heads=2,
            attribution_texts=2,
            n_boot=200,
            seq_len=32,
            features=None,
            circuits=None,
        )

    @classmethod
    def large(cls) -> StudyBudget:
        """Twice the default's tokens, two comparison layers, more heads confirmed."""
        base = cls()
        return replace(
            base,
            calibration_tokens=1536,
            activation_tokens=9216,
            cka_tokens=8192,
            control_tokens=4096,
            loss_tokens=8192,
            min_loss_texts=32,
            layer_sweep_tokens=4096,
            head_sequences=64,
            sweep_sequences=16,
            confirm_heads=24,
            attribution_texts=48,
            spectral_edits=("tail", "bulk", "drop_top"),
            features=SaeBudget(store_tokens=120_000, train_tokens=240_000, feature_tokens=2048, loss_tokens=2048),
            circuits=CircuitBudget(tasks=("geography", "greater-than"), n_prompts=24),
            ablation_layers=(0,),
        )

    def with_overrides(self, **overrides) -> StudyBudget:
        """A copy with some budgets replaced (None values ignored), checked again."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})
