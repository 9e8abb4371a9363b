"""The study report: sections built from the tables a study wrote (whatever exists)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..spectra.summary import GOOD_ALPHA, role_summary, worst_matrices
from .figures import alpha_by_layer, esd_loglog, grouped_bars, head_heatmap, heatmap, lines_by
from .html import Section, render
from .static import save_static


def _read(out: Path, stage: str, name: str) -> pd.DataFrame | None:
    path = out / stage / f"{name}.parquet"
    return pd.read_parquet(path) if path.exists() else None


def weights_overview(df: pd.DataFrame, heads: pd.DataFrame | None, source: str) -> list[str]:
    """Sentences on the model's spectral health, generated from the weights tables."""
    ok = df[df["status"] == "success"]
    lines = [f"Analyzed {len(ok)} of {len(df)} weight matrices of {source}; "
             f"{ok['alpha'].between(*GOOD_ALPHA).mean():.0%} have a power-law exponent alpha in [2, 6] "
             f"(mean {ok['alpha'].mean():.2f}, median {ok['alpha'].median():.2f})."]
    roles = role_summary(df).sort_values("mean_alpha")
    if len(roles) >= 2:
        lo, hi = roles.iloc[0], roles.iloc[-1]
        lines.append(f"The heaviest tails are in the {lo.role} matrices (mean alpha {lo.mean_alpha:.2f}), "
                     f"the lightest in the {hi.role} matrices (mean alpha {hi.mean_alpha:.2f}).")
    lines.append(f"{int((ok['alpha'] < 2).sum())} matrices are flagged over-trained (alpha < 2) and "
                 f"{int((ok['alpha'] > 6).sum())} under-trained (alpha > 6); the median ERG gap is "
                 f"{ok['erg_delta'].median():.2f} (normalized units; SETOL's ideal: 0 with alpha near 2).")
    if "num_traps" in ok:
        lines.append(f"{int((ok['num_traps'] > 0).sum())} matrices show correlation traps.")
    if heads is not None and len(heads):
        ov = heads[(heads["circuit"] == "ov") & (heads["status"] == "success")]
        if len(ov):
            best = ov.loc[ov["alpha"].idxmin()]
            lines.append(f"Across {len(ov)} heads the OV circuits have mean alpha {ov['alpha'].mean():.2f}; the "
                         f"heaviest-tailed is block {int(best['block'])} head {int(best['head'])} (alpha {best['alpha']:.2f}).")
    return lines


def findings(out: Path) -> list[str]:
    """Sentences on the domain findings, generated from the activation, mechanism and bridge tables."""
    lines = []
    energy = _read(out, "activations", "energy")
    if energy is not None and len(energy):
        e = energy[energy["site"] == "resid_post"].groupby("domain")["energy_mean"].mean().sort_values()
        lines.append(f"Token energy (0.5 = typical of the pooled domains): highest for {e.index[-1]} ({e.iloc[-1]:.2f}), "
                     f"lowest for {e.index[0]} ({e.iloc[0]:.2f}), averaged over layers.")
    acts = _read(out, "activations", "activations")
    if acts is not None and len(acts):
        r = acts.groupby("domain")["effective_rank"].mean().sort_values()
        lines.append(f"Activations are most concentrated for {r.index[0]} (mean effective rank {r.iloc[0]:.1f}) and most "
                     f"spread for {r.index[-1]} ({r.iloc[-1]:.1f}).")
    heads = _read(out, "mechanisms", "ablation_heads")
    scores = _read(out, "mechanisms", "head_scores")
    if heads is not None and scores is not None and len(heads):
        top = scores.sort_values("induction", ascending=False).iloc[0]
        worst = heads.sort_values("damage", ascending=False).iloc[0]
        first = heads["first_copy_loss"].iloc[0] if "first_copy_loss" in heads else np.nan
        lines.append(f"Induction: loss on repeated random text drops from {first:.2f} (first copy) to "
                     f"{heads['baseline'].iloc[0]:.2f} nats (second copy); the top induction head is "
                     f"{int(top['layer'])}.{int(top['head'])} (score {top['induction']:.2f}), and ablating head "
                     f"{int(worst['layer'])}.{int(worst['head'])} hurts that loss most (+{worst['damage']:.3f} nats).")
    overlap = _read(out, "bridge", "overlap")
    if overlap is not None and len(overlap):
        tail = overlap[overlap["part"] == "tail"].groupby("domain")["enrichment"].median().sort_values()
        lines.append(f"Eigenmode overlap: the power-law tails of the weight matrices read {tail.index[-1]} "
                     f"activations most (median enrichment {tail.iloc[-1]:.2f}x a random subspace) and "
                     f"{tail.index[0]} least ({tail.iloc[0]:.2f}x).")
    abl = _read(out, "bridge", "ablation_domains")
    if abl is not None and len(abl):
        kinds = abl.groupby("kind")["damage"].mean()
        parts = ", ".join(f"{k} {v:+.3f}" for k, v in kinds.items())
        lines.append(f"Mean loss change per ablated component, by kind: {parts} nats.")
    corr = _read(out, "bridge", "correlation")
    if corr is not None and len(corr):
        sig = corr[corr["p_value"] < 0.05]
        lines.append(f"{len(sig)} of {len(corr)} spectral-metric vs causal-importance correlations have permutation "
                     f"p < 0.05 (uncorrected)" + (f"; strongest: {sig.iloc[sig['rho'].abs().argmax()]['metric']} vs "
                                                   f"{sig.iloc[sig['rho'].abs().argmax()]['target']} "
                                                   f"(rho {sig.iloc[sig['rho'].abs().argmax()]['rho']:+.2f})" if len(sig) else "") + ".")
    return lines


def _esd_figures(model: str, df: pd.DataFrame, k: int = 4) -> list:
    from ..models.open_source import open_source
    from ..spectra.esd import gram_eigenvalues

    ok = df[df["status"] == "success"]
    picks = list(worst_matrices(df, k=2)["name"])
    for _, g in ok.groupby("role"):
        if len(picks) >= k:
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
    return figs


_SPECTRAL_EDITS = {"tail": "tail only", "bulk": "bulk only (tail removed)"}


def edit_label(component: str) -> str:
    """A short axis label for an ablation component name.

    'spectral:model.layers.0.mlp.down_proj.weight:bulk' -> 'L0 mlp.down_proj: bulk only (tail removed)',
    'spectral:...:drop_top:8' -> 'L0 ...: top 8 removed', 'attn:3' -> 'L3 attention', 'mlp:3' -> 'L3 MLP';
    anything else unchanged.
    """
    kind, _, rest = component.partition(":")
    if kind in ("attn", "mlp") and rest.isdigit():
        return f"L{rest} {'attention' if kind == 'attn' else 'MLP'}"
    if kind != "spectral":
        return component
    name, _, edit = rest.partition(":")
    parts = name.removesuffix(".weight").split(".")
    layer = next((parts[i + 1] for i, p in enumerate(parts[:-1]) if p in ("layers", "h", "layer") and parts[i + 1].isdigit()), None)
    matrix = ".".join(parts[-2:])
    edit = f"top {edit.split(':')[1]} removed" if edit.startswith("drop_top:") else _SPECTRAL_EDITS.get(edit, edit)
    return f"{'L' + layer + ' ' if layer is not None else ''}{matrix}: {edit}"


def _lens_figure(lens: pd.DataFrame):
    top = lens[(lens["kind"] == "top") & (lens["rank"] == 0)]
    grid = top.pivot_table(index="layer", columns="position", values="prob")
    text = top.pivot_table(index="layer", columns="position", values="token", aggfunc="first")
    return heatmap(grid, "Logit lens: top-1 next token and its probability, by layer and position",
                   "prob", "position", "layer", text=text)


def build_report(ctx) -> Path:
    """Write ``report.html`` (and static PNGs under figures/) from the study's tables."""
    out: Path = ctx.out
    sections = []
    weights, heads_w = _read(out, "weights", "weights"), _read(out, "weights", "weights_heads")
    overview = []
    if weights is not None:
        overview += weights_overview(weights, heads_w, ctx.model)
    overview += findings(out)
    sections.append(Section("overview", "Overview", overview))
    if weights is not None:
        sections.append(Section("weights", "Weight spectra by layer",
                                ["Power-law tail exponent alpha of each weight matrix (weightwatcher's fit) and the ERG "
                                 "gap; SETOL: alpha near 2 is ideal, 2 to 6 well to weakly trained."],
                                [alpha_by_layer(weights), alpha_by_layer(weights, "erg_delta", "ERG gap (xmin − ERG λmin) by layer")],
                                [role_summary(weights)]))
        sections.append(Section("esd", "Eigenvalue spectra", ["Log-log ESDs with the fitted power-law tail (dashed), "
                                                              "xmin (red) and the start of the ERG tail (purple)."],
                                _esd_figures(ctx.model, weights)))
    if heads_w is not None and len(heads_w):
        sections.append(Section("heads", "Attention-head circuits", ["Tail exponent of each head's OV and QK circuit."],
                                [head_heatmap(heads_w, "ov"), head_heatmap(heads_w, "qk")]))
    acts, energy = _read(out, "activations", "activations"), _read(out, "activations", "energy")
    if acts is not None and energy is not None:
        grid = energy[energy["site"] == "resid_post"].pivot_table(index="layer", columns="domain", values="energy_mean")
        sections.append(Section("energy", "Energy landscape",
                                ["Mean token energy at each layer's residual stream under the pooled reference Gaussian "
                                 "(0.5 = typical); high energy = a domain the layer treats as unusual."],
                                [heatmap(grid, "Token energy by layer and domain", "energy", "domain", "layer", "Magma"),
                                 lines_by(acts, "layer", "effective_rank", "domain", "Activation effective rank by layer"),
                                 lines_by(acts, "layer", "alpha", "domain", "Activation-spectrum alpha by layer")]))
    lens, scores, abl_heads = (_read(out, "mechanisms", n) for n in ("lens", "head_scores", "ablation_heads"))
    if lens is not None and scores is not None:
        figs = [_lens_figure(lens)]
        for kind in ("induction", "previous_token", "duplicate_token"):
            if kind in scores:
                figs.append(heatmap(scores.pivot_table(index="layer", columns="head", values=kind),
                                    f"{kind.replace('_', '-')} score by head", kind, "head", "layer"))
        if abl_heads is not None:
            mode = abl_heads["mode"].iloc[0] if "mode" in abl_heads and len(abl_heads) else "zero"
            figs.append(heatmap(abl_heads.pivot_table(index="layer", columns="head", values="damage"),
                                f"Induction-loss increase when each head is ablated ({mode})", "Δ loss", "head", "layer",
                                "Reds"))
        sections.append(Section("mechanisms", "Logit lens and attention heads", [], figs))
    overlap = _read(out, "bridge", "overlap")
    if overlap is not None:
        tail = overlap[overlap["part"] == "tail"]
        grid = tail.groupby(["block", "domain"])["enrichment"].median().unstack()
        sections.append(Section("overlap", "Eigenmode overlap",
                                ["Share of each domain's input variance in the power-law tail of each matrix, relative to a "
                                 "random subspace of the same size (median over the block's matrices); 1 = no preference."],
                                [heatmap(grid, "Tail enrichment by block and domain", "× random", "domain", "block", "RdBu_r", zmid=1.0)],
                                [tail.groupby(["role", "domain"])["enrichment"].median().unstack().reset_index()]))
    abl = _read(out, "bridge", "ablation_domains")
    if abl is not None:
        chosen = abl[abl["kind"].isin(["spectral", "head"]) | abl["layer"].isin(abl.loc[abl["kind"] == "spectral", "layer"])]
        summary = chosen.assign(component=np.where(chosen["kind"] == "head", "max head (layer " + chosen["layer"].astype(str) + ")",
                                                   chosen["component"]))
        summary = summary.groupby(["component", "domain"])["damage"].max().reset_index()
        summary["component"] = summary["component"].map(edit_label)
        sections.append(Section("ablation", "Spectral ablation vs component ablation",
                                ["Loss change per domain when a matrix keeps only its power-law tail or its bulk, or loses "
                                 "its top singular directions, beside ablating heads and whole blocks at the same layers."],
                                [grouped_bars(summary, "component", "damage", "domain", "Δ loss by edit and domain", "Δ loss (nats)")]))
    align, cka = _read(out, "bridge", "alignment"), _read(out, "bridge", "cka")
    if align is not None and cka is not None and len(align):
        grid = align.groupby(["writer_layer", "reader_layer"])["enrichment"].mean().unstack()
        sections.append(Section("alignment", "Cross-layer alignment",
                                ["Overlap of the directions each layer writes (o / down tails) with those later layers read "
                                 "(q, k, v, gate, up tails), relative to random subspaces; and linear CKA of the residual stream "
                                 "(it weights directions by their variance, so a few high-variance channels can dominate it)."],
                                [heatmap(grid, "Writer → reader tail alignment (× random)", "× random", "reader layer", "writer layer", "RdBu_r", zmid=1.0),
                                 heatmap(cka.pivot_table(index="layer_a", columns="layer_b", values="cka"), "Linear CKA between layers", "CKA", "layer", "layer")]))
    corr = _read(out, "bridge", "correlation")
    if corr is not None:
        sections.append(Section("correlation", "Do spectra predict mechanisms?",
                                ["Spearman rank correlation between spectral metrics and causal importance, with permutation "
                                 "p-values (uncorrected), reported whatever the sign."], [], [corr]))
    tokens, agreement = _read(out, "bridge", "energy_tokens"), _read(out, "bridge", "energy_agreement")
    if tokens is not None and agreement is not None:
        long = tokens.melt(id_vars=["position", "token"], value_vars=["energy_change", "integrated_gradients"])
        long["label"] = long["position"].astype(str) + ":" + long["token"]
        sections.append(Section("attribution", "Energy vs attribution",
                                ["Per token: change of token energy from the first to the last layer, and integrated-gradients "
                                 "attribution of the text's log-likelihood."],
                                [grouped_bars(long, "label", "value", "variable", "Energy change and attribution per token", "value")],
                                [agreement]))
    save_static(sections, out / "figures")
    return render(f"spectrascope study: {ctx.model}", sections, out / "report.html")
