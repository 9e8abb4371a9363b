"""The report's sections, each built from named tables (None when its tables are absent).

A section is registered in :data:`SECTIONS` with the function that builds it; adding one is
one function and one line. The robust view comes first where a raw one exists, intervals are
drawn as error bars or bands, controls are drawn dashed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..activations.controls import RANDOM_TOKENS, RANDOMIZED_WEIGHTS
from ..weights.summary import role_summary, worst_matrices
from .figures import (
    alpha_by_layer,
    bars_with_intervals,
    esd_loglog,
    head_heatmap,
    heatmap,
    lines_with_band,
)
from .html import Section
from .labels import edit_label
from .tables import StudyTables

CONTROLS = {RANDOM_TOKENS, RANDOMIZED_WEIGHTS}


def weights_section(t: StudyTables, model: str) -> Section | None:
    weights = t.get("weights", "weights")
    if weights is None or weights.empty:
        return None
    return Section(
        "weights",
        "Weight spectra by layer",
        [
            (
                "Power-law tail exponent alpha of each weight matrix (weightwatcher's fit) and the ERG gap; SETOL: "
                "alpha near 2 is ideal, 2 to 6 well to weakly trained. No data is used."
            )
        ],
        [alpha_by_layer(weights), alpha_by_layer(weights, "erg_delta", "ERG gap (xmin − ERG λmin) by layer")],
        [role_summary(weights)],
    )


def esd_section(t: StudyTables, model: str) -> Section | None:
    weights = t.get("weights", "weights")
    if weights is None or weights.empty:
        return None
    from ..models.open_source import open_source
    from ..spectra.esd import gram_eigenvalues

    ok = weights[weights["status"] == "success"]
    picks = list(worst_matrices(weights, k=2)["name"])
    for _, g in ok.groupby("role"):
        if len(picks) >= 4:
            break
        name = g.iloc[len(g) // 2]["name"]
        if name not in picks:
            picks.append(name)
    source = open_source(model)
    figs = []
    for name in picks:
        r = ok[ok["name"] == name].iloc[0]
        evals = gram_eigenvalues(source.load(name))
        erg_raw = r["erg_lambda_min"] * r["xmin"] / r["pl_lambda_min"] if r["pl_lambda_min"] else None
        figs.append(esd_loglog(name, evals, r["alpha"], r["xmin"], erg_raw))
    return Section(
        "esd",
        "Eigenvalue spectra",
        [("Log-log ESDs with the fitted power-law tail (dashed), xmin (red) and the start of the ERG tail (purple).")],
        figs,
    )


def heads_section(t: StudyTables, model: str) -> Section | None:
    heads = t.get("weights", "weights_heads")
    if heads is None or heads.empty:
        return None
    return Section(
        "heads",
        "Attention-head circuits",
        ["Tail exponent of each head's OV and QK circuit."],
        [head_heatmap(heads, "ov"), head_heatmap(heads, "qk")],
    )


def massive_section(t: StudyTables, model: str) -> Section | None:
    massive = t.get("activations", "massive_activations")
    if massive is None:
        return None
    if massive.empty:
        return Section(
            "massive",
            "Massive activations",
            [
                (
                    "No channel reaches 100x a typical channel or has 10x its RMS on the calibration texts, at any "
                    "residual site or matrix input: the robust view equals the raw one."
                )
            ],
        )
    resid = massive[massive["site"] == "resid_post"]
    grid = resid.pivot_table(index="layer", columns="channel", values="max_ratio", aggfunc="max")
    fig = heatmap(
        np.log10(grid),
        "Massive and outlier residual channels: log10(max |x| / typical channel)",
        "log10 ratio",
        "channel",
        "layer",
        "Magma",
    )
    shown = massive.sort_values("max_ratio", ascending=False).head(25)
    return Section(
        "massive",
        "Massive activations",
        [
            (
                "Channels whose values reach 100x a typical channel (massive) or whose RMS is 10x (outlier), found on "
                "calibration texts; the robust view leaves them out. 'sink' channels are large only at the first "
                "position, which every statistic already leaves out."
            )
        ],
        [fig],
        [
            shown[
                [
                    "site",
                    "layer",
                    "channel",
                    "kind",
                    "max_ratio",
                    "rms_ratio",
                    "first_position_ratio",
                    "fire_share",
                    "top_tokens",
                ]
            ]
        ],
    )


def activations_section(t: StudyTables, model: str) -> Section | None:
    acts = t.get("activations", "activations")
    if acts is None or acts.empty:
        return None
    figs = []
    for variant in ("robust", "raw"):
        v = acts[acts["variant"] == variant]
        null = v.groupby("layer")["effective_rank_null"].mean().mean()
        figs.append(
            lines_with_band(
                v,
                "layer",
                "effective_rank",
                "domain",
                f"Activation effective rank by layer ({variant}); dotted: isotropic noise at this n/d",
                reference=float(null),
                dashed=CONTROLS,
            )
        )
    robust = acts[acts["variant"] == "robust"]
    figs.append(
        lines_with_band(
            robust, "layer", "alpha", "domain", "Activation-spectrum alpha by layer (robust)", dashed=CONTROLS
        )
    )
    n_over_d = acts["n_over_d"].median()
    return Section(
        "activations",
        "Activation spectra",
        [
            (
                f"Spectra of the residual stream's covariance per domain, robust view first (massive and outlier "
                f"channels left out), raw below. n/d = {n_over_d:.1f}. Controls (dashed): random tokens and the model "
                "with shuffled weights; the dotted line is the effective rank of isotropic Gaussian noise at the same n/d."
            )
        ],
        figs,
    )


def energy_section(t: StudyTables, model: str) -> Section | None:
    energy = t.get("activations", "energy")
    if energy is None or energy.empty:
        return None
    return Section(
        "energy",
        "Energy landscape",
        [
            (
                "Mean token energy at each layer's residual stream under the reference Gaussian of the calibration "
                "texts (0.5 = those texts' own average; held-out text of the same domains sits higher, the reference "
                "being fitted on the calibration texts), with bootstrap intervals over texts; high energy = tokens the "
                "layer treats as unusual. Dashed: random tokens (control)."
            )
        ],
        [
            lines_with_band(
                energy,
                "layer",
                "energy_mean",
                "domain",
                "Token energy by layer and domain",
                reference=0.5,
                dashed=CONTROLS,
            )
        ],
    )


def mechanisms_section(t: StudyTables, model: str) -> Section | None:
    lens, scores, heads = (t.get("mechanisms", n) for n in ("lens", "head_scores", "ablation_heads"))
    if lens is None or scores is None:
        return None
    top = lens[(lens["kind"] == "top") & (lens["rank"] == 0)]
    figs = [
        heatmap(
            top.pivot_table(index="layer", columns="position", values="prob"),
            "Logit lens: top-1 next token and its probability, by layer and position",
            "prob",
            "position",
            "layer",
            text=top.pivot_table(index="layer", columns="position", values="token", aggfunc="first"),
        )
    ]
    for kind in ("induction", "previous_token", "duplicate_token"):
        if kind in scores:
            figs.append(
                heatmap(
                    scores.pivot_table(index="layer", columns="head", values=kind),
                    f"{kind.replace('_', '-')} score by head",
                    kind,
                    "head",
                    "layer",
                )
            )
    tables = []
    if heads is not None:
        mode = heads["mode"].iloc[0]
        figs.append(
            heatmap(
                heads.pivot_table(index="layer", columns="head", values="damage_screen"),
                f"Induction-loss increase when each head is {mode}-ablated (screen, "
                f"{int(heads['n_screen'].iloc[0])} sequences)",
                "Δ loss",
                "head",
                "layer",
                "Reds",
            )
        )
        confirmed = heads[heads["confirmed"]].sort_values("damage", ascending=False)
        confirmed = confirmed.assign(
            head_name=confirmed["layer"].astype(str) + "." + confirmed["head"].astype(str), measure="confirmed"
        )
        bars, title = confirmed, "induction-loss increase"
        if "damage_first_copy" in confirmed:  # the control beside each head: the first copy's loss
            first = confirmed.assign(
                measure="first copy (control)",
                damage=confirmed["damage_first_copy"],
                damage_lo=confirmed["damage_first_copy_lo"],
                damage_hi=confirmed["damage_first_copy_hi"],
            )
            bars = pd.concat([confirmed.assign(measure="second copy (induction)"), first])
            title = "loss increase on the second copy (induction) and on the first (control)"
        figs.append(
            bars_with_intervals(
                bars,
                "head_name",
                "damage",
                "measure",
                f"Confirmed on {int(confirmed['n_confirm'].iloc[0])} fresh sequences: {title} "
                "(95% intervals over sequences)",
                "Δ loss (nats)",
            )
        )
        control = [c for c in ("damage_first_copy", "damage_first_copy_lo", "damage_first_copy_hi") if c in confirmed]
        tables.append(
            confirmed[
                [
                    "layer",
                    "head",
                    "damage",
                    "damage_lo",
                    "damage_hi",
                    *control,
                    "damage_screen",
                    "induction",
                    "previous_token",
                ]
            ]
        )
    return Section("mechanisms", "Logit lens and attention heads", [], figs, tables)


def overlap_section(t: StudyTables, model: str) -> Section | None:
    overlap = t.get("activations", "overlap")
    if overlap is None or overlap.empty:
        return None
    tail = overlap[(overlap["part"] == "tail") & (overlap["k"] > 0)]
    figs = []
    for variant in ("robust", "raw"):
        v = tail[tail["variant"] == variant]
        grid = v.groupby(["block", "domain"])["enrichment"].median().unstack()
        figs.append(
            heatmap(
                grid,
                f"Tail enrichment by block and domain ({variant}; median over the block's matrices)",
                "× random",
                "domain",
                "block",
                "RdBu_r",
                zmid=1.0,
            )
        )
    summary = (
        tail[tail["variant"] == "robust"]
        .assign(above=lambda d: d["enrichment_lo"] > 1, below=lambda d: d["enrichment_hi"] < 1)
        .groupby(["role", "domain"])
        .agg(
            median_enrichment=("enrichment", "median"),
            share_above_1=("above", "mean"),
            share_below_1=("below", "mean"),
            n=("enrichment", "size"),
        )
        .reset_index()
    )
    return Section(
        "overlap",
        "Eigenmode overlap",
        [
            (
                "Share of each domain's input variance in the power-law tail of each matrix, relative to a random "
                "subspace of the same size (the control: 1 = no preference), robust view first. The table counts the "
                "share of matrices whose interval over texts lies above or below 1; random tokens is the domain-free "
                "control."
            )
        ],
        figs,
        [summary],
    )


def ablation_section(t: StudyTables, model: str) -> Section | None:
    abl, layers = t.get("bridge", "ablation_domains"), t.get("bridge", "layer_damage")
    if abl is None or layers is None:
        return None
    pooled = layers[layers["domain"] == "pooled"].assign(block=lambda d: d["kind"])
    figs = [
        lines_with_band(
            pooled,
            "layer",
            "damage",
            "block",
            f"Loss increase when one block is {pooled['mode'].iloc[0]}-ablated (pooled domains, 95% interval)",
            "Δ loss (nats)",
            reference=0.0,
        )
    ]
    labelled = abl.assign(edit_label=abl["component"].map(edit_label))
    figs.append(
        bars_with_intervals(
            labelled,
            "edit_label",
            "damage",
            "domain",
            "Spectral edits vs block ablation, per domain (95% interval over texts)",
            "Δ loss (nats)",
        )
    )
    return Section(
        "ablation",
        "Spectral ablation vs component ablation",
        [
            (
                "Every attention and MLP block ablated on its own (exact), then, at the compared layer, each domain's "
                "loss when a matrix keeps only its power-law tail or only its bulk, or loses its top singular "
                "directions, beside ablating the whole blocks; the random-token corpus is the domain-free control."
            )
        ],
        figs,
        [abl[["domain", "component", "damage", "damage_lo", "damage_hi", "baseline", "n_rows"]]],
    )


def alignment_section(t: StudyTables, model: str) -> Section | None:
    align, cka = t.get("bridge", "alignment"), t.get("activations", "cka")
    if align is None or cka is None or align.empty:
        return None
    medians = t.get("activations", "cka_adjacent")
    grid = align.groupby(["writer_layer", "reader_layer"])["enrichment"].mean().unstack()
    figs = [
        heatmap(
            grid,
            "Writer → reader tail alignment (× random; readers' norm gains folded in)",
            "× random",
            "reader layer",
            "writer layer",
            "RdBu_r",
            zmid=1.0,
        )
    ]
    near = align[align["reader_layer"] == align["writer_layer"] + 1]
    both = pd.concat(
        [
            near.assign(weights="trained", value=near["enrichment"]),
            near.assign(weights="shuffled (null)", value=near["enrichment_shuffled"]),
        ]
    )
    figs.append(
        lines_with_band(
            both.groupby(["writer_layer", "weights"])["value"].median().reset_index(),
            "writer_layer",
            "value",
            "weights",
            "Next-layer alignment: trained vs shuffled weights (median)",
            "× random",
            reference=1.0,
            dashed={"shuffled (null)"},
        )
    )
    for variant in ("robust", "raw"):
        v = cka[cka["variant"] == variant]
        figs.append(
            heatmap(
                v.pivot_table(index="layer_a", columns="layer_b", values="cka"),
                f"Debiased CKA between layers ({variant})",
                "CKA",
                "layer",
                "layer",
            )
        )
    return Section(
        "alignment",
        "Cross-layer alignment",
        [
            (
                "Overlap of the directions each layer writes (o / down tails) with those later layers read (q, k, v, gate, "
                "up tails, norm gains folded in), relative to random subspaces, with the same pairs after shuffling the "
                "weights as the null; and debiased CKA of the residual stream (robust view first), its median over "
                "adjacent layers with a delete-a-group jackknife interval (groups of consecutive texts; on Fisher's z "
                "scale, so it stays below 1). Linear CKA weighs each token by its squared norm: the table's "
                "lowest_cka_without_top_tokens is the lowest adjacent pair again without the 1 % of tokens of largest "
                "norm, and where it is near the median, blocks in the maps below are those few tokens, not the layers."
            )
        ],
        figs,
        [] if medians is None or medians.empty else [medians],
    )


CORRELATION_COLUMNS = (
    "family",
    "metric",
    "target",
    "n",
    "rho",
    "p_value",
    "q_value",
    "rho_given_order",
    "p_given_order",
    "p_shift",
    "rho_trimmed",
    "p_trimmed",
)


def correlation_section(t: StudyTables, model: str) -> Section | None:
    corr = t.get("bridge", "correlation")
    if corr is None:
        return None
    return Section(
        "correlation",
        "Do spectra predict mechanisms?",
        [
            (
                "Spearman rank correlation between spectral metrics and causal importance (exact ablation damage), "
                "with permutation p-values and Benjamini-Hochberg q-values within each family; only q < 0.05 is a finding."
            ),
            (
                "Relabeling treats layers as exchangeable; they are not (neighbours resemble each other, both series "
                "can drift with depth, the first and last blocks are extremes of their own). For layers three checks "
                "try to break each correlation: the partial correlation given depth (rho_given_order), circular "
                "shifts of one series along the layers, which keep each series' smoothness (p_shift, at least 1/n), "
                "and the correlation without the first and last layer (rho_trimmed)."
            ),
        ],
        [],
        [corr[[c for c in CORRELATION_COLUMNS if c in corr]]],
    )


def attribution_section(t: StudyTables, model: str) -> Section | None:
    tokens, agree = t.get("activations", "energy_tokens"), t.get("activations", "energy_agreement")
    if tokens is None or agree is None or tokens.empty:
        return None
    first = tokens[tokens["text"] == tokens["text"].min()]
    long = first.melt(id_vars=["position", "token"], value_vars=["energy_change", "grad_x_input"])
    long["label"] = long["position"].astype(str) + ":" + long["token"]
    return Section(
        "attribution",
        "Energy vs attribution",
        [
            (
                "Per token (the first text shown): change of token energy from the first to the last layer, and "
                "gradient x input attribution of the text's log-likelihood (exact; integrated gradients from a zero "
                "baseline did not converge on SmolLM2, see spectrascope.bridge.energy_attribution). The table "
                "averages per-text rank correlations over texts (interval over texts, within-text permutation "
                "null, q-values); the row given position correlates the ranks' residuals on position, since "
                "attribution and energy both follow position within a text."
            )
        ],
        [
            bars_with_intervals(
                long.assign(value_lo=long["value"], value_hi=long["value"]),
                "label",
                "value",
                "variable",
                "Energy change and attribution per token (first text)",
                "value",
            )
        ],
        [agree],
    )


SECTIONS: list[Callable[[StudyTables, str], Section | None]] = [
    weights_section,
    esd_section,
    heads_section,
    massive_section,
    activations_section,
    energy_section,
    mechanisms_section,
    overlap_section,
    ablation_section,
    alignment_section,
    correlation_section,
    attribution_section,
]
"""The report's sections in order (after the overview)."""
