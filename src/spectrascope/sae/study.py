"""The SAE part of ``spectrascope study``: a stage function and the "Features" report sections.

:func:`run` (the stage protocol: ``run(ctx) -> {table name: DataFrame}``; the study runner
writes each as ``OUT/sae/<table>.parquet`` + .csv) trains one SAE on the middle layer's
``hook_resid_post`` over the study's corpora and returns the tables of :data:`PRODUCES`:

    sae_quality                 :func:`~spectrascope.sae.evaluate.evaluate_sae` per domain
    feature_domains, feature_ranking, feature_examples, feature_histograms, feature_logits
                                :func:`~spectrascope.sae.features.sae_features`
    sae_spectra                 ESD metrics of W_dec / W_enc, trained vs random init
    sae_overlap                 tail / bulk shares of each domain's top features vs controls
    sae_ablation                top features vs random features vs the bridge's top components

It also leaves two artifacts in ``OUT/features/``: the SAE (``sae/``, a SAELens folder with its
training log) and the activation store (``activations/``, resumable). It reads
``bridge/ablation_domains`` (the components it compares with) and the activation stage's clean
forward of the loss texts (``activations/clean_losses.safetensors``, where its feature removals
resume) when those stages finished in the folder with this study's fingerprint, so it runs
after them but does not require them.

Budgets come from the study budget's ``features`` field (a :class:`SaeBudget`); the small
study budget has none, and then the stage does not run. :func:`features_sections` builds the
report sections from the tables (whatever exists).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ..mech.ablation_sweep import CleanPass

STAGE = "features"
PRODUCES = (
    "sae_quality",
    "feature_domains",
    "feature_ranking",
    "feature_examples",
    "feature_histograms",
    "feature_logits",
    "sae_spectra",
    "sae_overlap",
    "sae_ablation",
)
"""The tables :func:`run` returns."""


@dataclass(frozen=True)
class SaeBudget:
    """How much the SAE stage reads and trains.

    Attributes:
        layer: the block whose ``hook_resid_post`` is read (None: the middle block).
        arch, expansion, k: the SAE (d_sae = expansion x d_model).
        store_tokens, train_tokens: activations collected, training tokens (epochs repeat).
        eval_tokens, feature_tokens: held-out tokens per domain for quality and features.
        loss_tokens: target tokens per domain of the feature-removal losses (1,024: nine texts
            of 128, so the intervals over texts have texts to resample).
        top_features: domain-selective features per domain used by overlap and ablation.
        random_draws: draws of as many random live features, the control of each removal (each
            draw is one forward over the domain's loss texts; the study's default takes 3).
        cards: feature cards in the report.
    """

    layer: int | None = None
    arch: str = "topk"
    expansion: int = 4
    k: int = 32
    store_tokens: int = 60_000
    train_tokens: int = 120_000
    batch_size: int = 512
    eval_tokens: int = 512
    feature_tokens: int = 1024
    loss_tokens: int = 1024
    top_features: int = 5
    random_draws: int = 5
    cards: int = 6

    @classmethod
    def from_study(cls, budget: Any) -> SaeBudget:
        """The study budget's ``features`` (a SaeBudget or a dict of its fields; defaults when absent)."""
        settings = getattr(budget, "features", None) or {}
        if isinstance(settings, SaeBudget):
            return settings
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(settings).items() if k in known})


def removal_layer(budget: Any, n_layers: int) -> int | None:
    """The block the feature removals resume at (after the SAE's ``resid_post`` site), whose
    clean residual the activation stage keeps for them; None when the budget trains no SAE."""
    if getattr(budget, "features", None) is None:
        return None
    b = SaeBudget.from_study(budget)
    layer = (b.layer if b.layer is not None else n_layers // 2) + 1
    return layer if layer < n_layers else None


def run(ctx: Any) -> dict[str, pd.DataFrame]:
    """Train, evaluate and measure one SAE; return the tables of :data:`PRODUCES`."""
    from ..corpora import corpus_texts
    from .bridge import dictionary_spectra, feature_ablation, feature_tail_overlap
    from .evaluate import evaluate_sae
    from .features import sae_features
    from .sites import bind_site
    from .train import train_sae

    b, loaded = SaeBudget.from_study(ctx.budget), ctx.loaded()
    out = Path(ctx.out) / STAGE
    out.mkdir(parents=True, exist_ok=True)
    corpora = ctx.budget.corpora
    layer = b.layer if b.layer is not None else int(loaded.arch.n_layers) // 2
    site = f"blocks.{layer}.hook_resid_post"
    d_model = int(loaded.arch.d_model)
    sae = train_sae(
        loaded,
        arch=b.arch,
        d_sae=b.expansion * d_model,
        k=b.k,
        site=site,
        corpus=corpora,
        tokens=b.train_tokens,
        store_tokens=b.store_tokens,
        store_dir=out / "activations",
        batch_size=b.batch_size,
        seed=ctx.seed,
        out=out / "sae",
        show_progress=ctx.show_progress,
        device=ctx.device,
    )
    seq_len = ctx.budget.seq_len
    tables = {"sae_quality": evaluate_sae(sae, loaded, site, corpora, b.eval_tokens, seq_len, seed=ctx.seed)}
    report = sae_features(sae, loaded, site, corpora, b.feature_tokens, seq_len, seed=ctx.seed)
    tables.update(report.tables())
    tables["sae_spectra"] = dictionary_spectra(sae, seed=ctx.seed)[0]
    binding = bind_site(loaded, sae, site)
    names = [c.name for c in corpus_texts(corpora)]
    items = [i.strip() for i in corpora.split(",") if i.strip()]
    top = _top_features(report.ranking, names, b.top_features)
    live = report.ranking["feature"].tolist()
    tables["sae_overlap"] = feature_tail_overlap(binding, top, live, seed=ctx.seed)
    by_item = {item: top.get(name, []) for item, name in zip(items, names, strict=True)}
    features = feature_ablation(
        binding,
        by_item,
        live,
        b.loss_tokens,
        seq_len,
        n_random=b.random_draws,
        seed=ctx.seed,
        clean=_stored_clean(ctx, names, items, layer),
    ).assign(source="features")
    fresh = ctx.finished("bridge")  # this study's bridge (same fingerprint), not another run's table
    components = _bridge_rows(ctx.out, dict(zip(names, items, strict=True))) if fresh else pd.DataFrame()
    both = pd.concat([features, components], ignore_index=True) if len(components) else features
    order = both["domain"].map(items.index).to_numpy()
    tables["sae_ablation"] = both.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    return tables


def _stored_clean(
    ctx: Any, names: list[str], items: list[str], layer: int
) -> Callable[[str, Any], CleanPass | None] | None:
    """(domain item, loss metric) -> the activation stage's clean forward of those texts
    resumed after ``layer`` (:mod:`spectrascope.bridge.clean_losses`); None when that stage has
    not finished in this folder with this study's fingerprint (model, seed, device, corpora,
    budgets, version: ``ctx.finished``) or left no such file."""
    from ..bridge.clean_losses import FILE_NAME, CleanLosses

    if not ctx.finished("activations"):
        return None
    stored = CleanLosses.load(Path(ctx.out) / "activations" / FILE_NAME)
    if stored is None:
        return None
    name_of = dict(zip(items, names, strict=True))
    return lambda item, metric: stored.clean_pass(name_of[item], metric, [layer + 1])


def _top_features(ranking: pd.DataFrame, domains: list[str], n: int) -> dict[str, list[int]]:
    """Domain -> its ``n`` best-ranked selective features (any ranked ones when none is selective)."""
    out = {}
    for domain in domains:
        mine = ranking[ranking["top_domain"] == domain]
        chosen = mine[mine["selective"].astype(bool)] if mine["selective"].any() else mine
        out[domain] = chosen["feature"].head(n).astype(int).tolist()
    return out


def _bridge_rows(out: Path, item_of: dict[str, str], n: int = 3) -> pd.DataFrame:
    """The bridge's ``n`` most damaging head or spectral edits per domain, as rows of
    :data:`~spectrascope.sae.bridge.ABLATION_COLUMNS` (``source`` = "bridge"), when the bridge ran.

    They are read, not measured again: the bridge ablated them on each domain's own loss
    (``loss_tokens`` from >= 16 texts, mean over the calibration texts; 4,096 tokens at the
    default budget against the feature removals' 1,024), so the comparison is between two
    samples of the same domain, each with its interval over texts. ``item_of`` maps a corpus name to its item in the
    corpora spec (the ``domain`` the feature rows carry)."""
    from .bridge import ABLATION_COLUMNS

    path = Path(out) / "bridge" / "ablation_domains.parquet"
    if not path.exists():
        return pd.DataFrame(columns=[*ABLATION_COLUMNS, "source"])
    table = pd.read_parquet(path)
    wanted = {"kind", "domain", "component", "damage", "damage_lo", "damage_hi", "baseline", "n_rows"}
    if not wanted <= set(table.columns):
        return pd.DataFrame(columns=[*ABLATION_COLUMNS, "source"])
    table = table[table["kind"].isin(["head", "spectral"]) & table["domain"].isin(list(item_of))]
    top = table.sort_values("damage", ascending=False).groupby("domain", sort=False).head(n)
    top = top.iloc[np.argsort(top["domain"].map(list(item_of).index).to_numpy(), kind="stable")]
    return pd.DataFrame(
        {
            "domain": top["domain"].map(item_of),
            "intervention": top["component"],
            "kind": top["kind"],
            "n_removed": 1,
            "baseline": top["baseline"],
            "loss": top["baseline"] + top["damage"],
            "damage": top["damage"],
            "damage_lo": top["damage_lo"],
            "damage_hi": top["damage_hi"],
            "excess": np.nan,
            "excess_lo": np.nan,
            "excess_hi": np.nan,
            "n_texts": top["n_rows"],
            "source": "bridge",
        }
    )


# ----------------------------------------------------------------------------- report


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / f"{name}.parquet"
    return pd.read_parquet(path) if path.exists() else None


FEW_TEXTS = 8
"""Per-domain quality rows on fewer held-out texts than this are flagged in the report."""


def features_sections(out: str | Path, cards: int | None = None) -> list:
    """The "Features" section and one card section per top feature, from ``OUT/sae`` tables."""
    from ..report.html import Section

    folder = Path(out) / STAGE
    quality = _read(folder, "sae_quality")
    if quality is None:
        return []
    sections = [
        Section(
            "features",
            "Features (sparse autoencoder)",
            paragraphs=_overview(folder, quality),
            figures=_overview_figures(folder),
            tables=_overview_tables(folder, quality),
        )
    ]
    ranking = _read(folder, "feature_ranking")
    if ranking is None or ranking.empty:
        return sections
    n = cards if cards is not None else SaeBudget().cards
    for feature in _card_features(ranking, n):
        sections.append(_card(folder, ranking, int(feature)))
    return sections


def _overview(folder: Path, quality: pd.DataFrame) -> list[str]:
    import json

    lines = []
    cfg_path = folder / "sae" / "cfg.json"
    if cfg_path.exists():
        cfg = json.loads(cfg_path.read_text())
        meta = cfg.get("metadata", {})
        train = meta.get("spectrascope", {}).get("training", {})
        lines.append(
            f"A {meta.get('spectrascope', {}).get('architecture', cfg.get('architecture'))} SAE with "
            f"{cfg['d_sae']} features reads {meta.get('hook_name')} (width {cfg['d_in']}); trained on "
            f"{train.get('tokens', 0):,} tokens in {train.get('seconds', float('nan')):.0f} s, first position "
            "of every text left out (the attention sink)."
        )
    row = quality[quality["domain"] == "all"].iloc[0]
    lines.append(
        f"On held-out text it explains {row['explained_variance']:.1%} of the variance "
        f"[{row['explained_variance_lo']:.1%}, {row['explained_variance_hi']:.1%}] with L0 {row['l0']:.1f}; "
        f"splicing it into the forward raises the loss by {row['ce_increase']:.3f} nats "
        f"[{row['ce_increase_lo']:.3f}, {row['ce_increase_hi']:.3f}], {row['loss_recovered']:.1%} of the loss "
        "recovered between zero ablation and the clean model (95 % bootstrap over texts)."
    )
    few = quality[(quality["domain"] != "all") & (quality["n_texts"] < FEW_TEXTS)]
    if len(few):
        lines.append(
            "Per-domain rows resting on fewer than "
            f"{FEW_TEXTS} held-out texts have rough intervals: "
            + ", ".join(f"{r.domain} ({int(r.n_texts)})" for r in few.itertuples())
            + "."
        )
    ranking = _read(folder, "feature_ranking")
    if ranking is not None and len(ranking):
        selective = ranking[ranking["selective"].astype(bool)]
        lines.append(
            f"{len(selective)} of {len(ranking)} tested features are domain-selective (permutation test "
            "over texts, BH q < 0.05, specificity above chance); by domain: "
            + ", ".join(f"{d} {n}" for d, n in selective["top_domain"].value_counts().items())
            + "."
        )
    overlap = _read(folder, "sae_overlap")
    if overlap is not None and len(overlap):
        tail = overlap[overlap["part"] == "tail"]
        above, below = int((tail["enrichment_lo"] > 1).sum()), int((tail["enrichment_hi"] < 1).sum())
        lines.append(
            f"Decoder directions of the top domain features sit in the power-law tails of the matrices that "
            f"read or write the site with median enrichment {tail['enrichment'].median():.2f}x random unit "
            f"directions (the control); per domain and matrix the 95 % interval (bootstrap over directions) "
            f"lies above 1 in {above} and below 1 in {below} of {len(tail)}. All live features of the SAE "
            f"give {(tail['all_features_share'] / tail['random_share']).median():.2f}x."
        )
    ablation = _read(folder, "sae_ablation")
    if ablation is not None and len(ablation) and "excess" in ablation:
        lines.extend(_ablation_sentences(ablation))
    return lines


def _removed(features: pd.DataFrame) -> str:
    """How many features each domain's removal took out: "5 ", "2-5 " when domains differ, or ""
    when the table does not say."""
    counts = features["n_removed"].dropna() if "n_removed" in features else pd.Series(dtype=float)
    if counts.empty:
        return ""
    low, high = int(counts.min()), int(counts.max())
    return f"{low} " if low == high else f"{low}-{high} "


def _ablation_sentences(ablation: pd.DataFrame) -> list[str]:
    """What removing features did to each domain's loss, against random features and components."""
    lines = []
    features = ablation[ablation["kind"] == "features"]
    if len(features):
        per_domain = "; ".join(
            f"{r.domain} {r.damage:+.3f} "
            + (f"[{r.damage_lo:+.3f}, {r.damage_hi:+.3f}]" if np.isfinite(r.damage_lo) else "(one text: no interval)")
            for r in features.itertuples()
        )
        excess = features.dropna(subset=["excess_lo"])
        lines.append(
            f"Removing each domain's {_removed(features)}most selective features changes its loss by (nats per "
            f"token, 95 % bootstrap over texts): {per_domain}. Against as many random live features (the control) the excess is "
            f"above zero in {int((excess['excess_lo'] > 0).sum())} and below zero in "
            f"{int((excess['excess_hi'] < 0).sum())} of {len(excess)} domains."
        )
    others = ablation[~ablation["kind"].isin(["features", "random features"])]
    bridge = others["source"].eq("bridge") if "source" in others else pd.Series(False, index=others.index)
    for kind, g in others.groupby("kind"):
        where = "on the same texts"
        if bridge[g.index].all() and "n_texts" in g and len(features):
            where = (
                f"as the bridge measured them on its own sample of each domain's texts (median "
                f"{g['n_texts'].median():.0f} texts, against {features['n_texts'].median():.0f} here)"
            )
        lines.append(
            f"For scale, mean-ablating the bridge's most damaging {kind} edits (up to "
            f"{g.groupby('domain').size().max()} per domain) {where}: median damage {g['damage'].median():+.3f} "
            f"nats, interval above zero in {int((g['damage_lo'] > 0).sum())} of {len(g)} (domain, edit) pairs."
        )
    return lines


def _overview_figures(folder: Path) -> list:
    import plotly.graph_objects as go

    figures = []
    spectra = _read(folder, "sae_spectra")
    if spectra is not None:
        fig = go.Figure()
        for weights, g in spectra.groupby("weights"):
            fig.add_trace(go.Bar(x=g["matrix"], y=g["alpha"], name=f"{weights}"))
        fig.update_layout(
            template="plotly_white",
            title="Power-law alpha of the dictionary: trained vs random init",
            barmode="group",
            yaxis_title="alpha",
            height=360,
        )
        figures.append(fig)
    return figures


def _overview_tables(folder: Path, quality: pd.DataFrame) -> list[pd.DataFrame]:
    from .evaluate import SUMMARY_COLUMNS

    tables = [quality[[*SUMMARY_COLUMNS, "loss_recovered_lo", "loss_recovered_hi"]]]
    spectra = _read(folder, "sae_spectra")
    if spectra is not None:
        tables.append(spectra[["matrix", "weights", "alpha", "num_pl_spikes", "erg_num", "erg_delta", "stable_rank"]])
    overlap = _read(folder, "sae_overlap")
    if overlap is not None and len(overlap):
        tail = overlap[overlap["part"] == "tail"]  # the bulk rows stay in sae_overlap.parquet
        tables.append(
            tail[
                [
                    "domain",
                    "role",
                    "block",
                    "relation",
                    "k",
                    "share",
                    "random_share",
                    "all_features_share",
                    "enrichment",
                    "enrichment_lo",
                    "enrichment_hi",
                ]
            ]
        )
    ablation = _read(folder, "sae_ablation")
    if ablation is not None and len(ablation):
        tables.append(
            ablation[
                [
                    c
                    for c in (
                        "domain",
                        "intervention",
                        "kind",
                        "damage",
                        "damage_lo",
                        "damage_hi",
                        "excess",
                        "excess_lo",
                        "excess_hi",
                        "n_texts",
                        "source",
                    )
                    if c in ablation
                ]
            ]
        )
    ranking = _read(folder, "feature_ranking")
    if ranking is not None and len(ranking):
        tables.append(
            ranking.head(20)[
                [
                    "rank",
                    "feature",
                    "top_domain",
                    "specificity",
                    "specificity_lo",
                    "specificity_hi",
                    "sensitivity",
                    "q_value",
                ]
            ]
        )
    return tables


def _card_features(ranking: pd.DataFrame, n: int) -> list[int]:
    """The top-ranked feature of each domain first, then the next best, up to ``n``."""
    firsts = ranking.drop_duplicates("top_domain")["feature"].tolist()
    rest = [f for f in ranking["feature"].tolist() if f not in firsts]
    return (firsts + rest)[:n]


def _card(folder: Path, ranking: pd.DataFrame, feature: int):
    """One feature card: histogram + domain breakdown, top contexts, promoted tokens."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ..report.html import Section

    row = ranking[ranking["feature"] == feature].iloc[0]
    domains = _read(folder, "feature_domains")
    hist = _read(folder, "feature_histograms")
    examples = _read(folder, "feature_examples")
    logits = _read(folder, "feature_logits")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("activation histogram (held-out)", "P(active | domain)"))
    if hist is not None:
        h = hist[(hist["feature"] == feature) & (hist["count"] > 0)]
        centers = np.sqrt(h["bin_lo"].clip(lower=1e-4) * h["bin_hi"].replace(np.inf, h["bin_lo"].max() * 1.6))
        fig.add_trace(go.Bar(x=centers, y=h["count"], name="count", showlegend=False), row=1, col=1)
        fig.update_xaxes(type="log", title_text="activation", row=1, col=1)
    if domains is not None:
        d = domains[domains["feature"] == feature]
        fig.add_trace(go.Bar(x=d["domain"], y=d["sensitivity"], name="sensitivity", showlegend=False), row=1, col=2)
    fig.update_layout(template="plotly_white", height=320, title=f"feature {feature}")
    tables = []
    if examples is not None:
        tables.append(examples[examples["feature"] == feature][["rank", "activation", "domain", "context"]])
    if logits is not None:
        mine = logits[logits["feature"] == feature]
        if len(mine):
            wide = pd.DataFrame(
                {
                    "promoted": mine[mine["direction"] == "promoted"]["token"].tolist(),
                    "suppressed": mine[mine["direction"] == "suppressed"]["token"].tolist(),
                }
            )
            tables.append(wide)
    paragraph = (
        f"Top domain {row['top_domain']}: specificity P(domain | active) {row['specificity']:.2f} "
        f"[{row['specificity_lo']:.2f}, {row['specificity_hi']:.2f}], sensitivity P(active | domain token) "
        f"{row['sensitivity']:.3f} [{row['sensitivity_lo']:.3f}, {row['sensitivity_hi']:.3f}], q = "
        f"{row['q_value']:.3g}; fires on {row['frequency']:.2%} of held-out tokens; max activation "
        f"{row['max_activation']:.2f}. Contexts mark the activating token «like this»."
    )
    return Section(
        f"feature-{feature}",
        f"Feature {feature} · {row['top_domain']}",
        paragraphs=[paragraph],
        figures=[fig],
        tables=tables,
    )


def budget_dict(budget: SaeBudget) -> dict:
    """The budget as a dict (for ``StudyBudget.extra["sae"]``)."""
    return asdict(budget)
