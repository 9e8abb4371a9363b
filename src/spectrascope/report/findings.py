"""The overview's sentences, generated from a study's tables: each finding is a number with its
interval and its control, and only what survives is stated as a finding.

Rules: an effect is stated when its bootstrap interval excludes "no effect" (0 damage, 1x
enrichment) or, for a family of correlations, when its BH q-value is below :data:`Q_LEVEL`;
otherwise the sentence says plainly that nothing survives. Every number is given with its
interval (``estimate [lo, hi]``, 95 %) and the control it is compared against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import binomtest, wilcoxon

from ..activations.controls import RANDOM_TOKENS, RANDOMIZED_WEIGHTS
from ..bridge.correlation import spearman
from ..stats.bootstrap import MIN_INTERVAL_UNITS, Interval, weighted_mean_interval
from ..weights.summary import GOOD_ALPHA, role_summary
from .labels import edit_label
from .tables import StudyTables

if TYPE_CHECKING:
    from ..study.budget import StudyBudget

Q_LEVEL = 0.05
SHORT_TAIL = 20
"""Tails of fewer eigenvalues than this give loose alphas (weightwatcher's small-sample regime)."""
MOST = 2 / 3
"""A role's overlap is stated as a finding when this share of its (layer, domain) intervals
exclude 1 in the same direction."""


def ci(row, column: str, digits: int = 2, signed: bool = False) -> str:
    """``estimate [lo, hi]`` of ``column`` in a row with ``column_lo`` / ``column_hi`` (``signed``:
    every number with its sign, for an effect that may be negative)."""
    f = f"{'+' if signed else ''}.{digits}f"
    return f"{row[column]:{f}} [{row[f'{column}_lo']:{f}}, {row[f'{column}_hi']:{f}}]"


def _domains(df: pd.DataFrame) -> pd.DataFrame:
    return df[~df["domain"].astype(str).str.startswith("control:")]


def weights_findings(t: StudyTables, model: str) -> list[str]:
    df = t.get("weights", "weights")
    if df is None or df.empty:
        return []
    ok = df[df["status"] == "success"]
    analyzed = df[df["status"] != "skipped"]
    n_skipped = len(df) - len(analyzed)
    skipped = (
        f" ({n_skipped} other tensors, such as norm vectors, not analyzed: reasons in the table)" if n_skipped else ""
    )
    short = (
        f", {int((ok['num_pl_spikes'] < SHORT_TAIL).sum())} of them on fewer than {SHORT_TAIL} tail eigenvalues"
        if "num_pl_spikes" in ok
        else ""
    )
    lines = [
        (
            f"Weight spectra: a power-law fit ran on {len(ok)} of {len(analyzed)} analyzed matrices of {model}{skipped}"
            f"{short}; {ok['alpha'].between(*GOOD_ALPHA).mean():.0%} have alpha in [2, 6] (median alpha "
            f"{ok['alpha'].median():.2f}; median ERG gap {ok['erg_delta'].median():.2f} in normalized units, SETOL's ideal 0)."
        )
    ]
    roles = role_summary(df).sort_values("mean_alpha")
    if len(roles) >= 2:
        heavy, light = (_role_alpha(ok, role) for role in (roles.iloc[0].role, roles.iloc[-1].role))
        apart = "do not overlap" if heavy.hi < light.lo else "overlap"
        lines.append(
            f"Heaviest tails: {roles.iloc[0].role} (mean alpha {_fmt(heavy)} over {heavy.n_units} matrices); "
            f"lightest: {roles.iloc[-1].role} ({_fmt(light)} over {light.n_units}); intervals bootstrap the "
            f"role's matrices (layers) and {apart}."
        )
    if "num_structure_spikes" in ok:
        spikes, n_traps = ok["num_structure_spikes"], int((ok["num_traps"] > 0).sum())
        lines.append(
            f"Against each matrix's own shuffle (the randomized-weights control): {int((spikes > 0).sum())} "
            f"matrices have eigenvalues beyond everything their shuffle produces (correlation structure; median "
            f"{spikes.median():.0f} per matrix, {int((spikes >= 3).sum())} with 3 or more, where an unstructured "
            f"heavy-tailed matrix gives about 1), {n_traps} {'has' if n_traps == 1 else 'have'} correlation traps "
            f"(large entries that spike even when shuffled)."
        )
    return lines


def _role_alpha(ok: pd.DataFrame, role: str) -> Interval:
    """Mean alpha of a role's matrices with a bootstrap interval over them."""
    return weighted_mean_interval(ok.loc[ok["role"] == role, "alpha"].to_numpy(float), seed=0)


def _fmt(interval: Interval, digits: int = 2) -> str:
    return f"{interval.estimate:.{digits}f} [{interval.lo:.{digits}f}, {interval.hi:.{digits}f}]"


def activation_findings(t: StudyTables) -> list[str]:
    acts, massive = t.get("activations", "activations"), t.get("activations", "massive_activations")
    if acts is None or acts.empty:
        return []
    lines = []
    if massive is not None and len(massive):
        resid = massive[(massive["site"] == "resid_post") & massive["excluded"]]
        channels = resid.groupby("channel")["layer"].count().sort_values(ascending=False)
        sink = massive[massive["site"] == "resid_post"]
        top = ", ".join(f"{c} ({n} layers)" for c, n in channels.head(4).items())
        text = (
            f"Massive activations: {len(channels)} residual channels are massive or outliers in at least one layer "
            f"and are left out of the robust view: {top}."
            if len(channels)
            else "Massive activations: no residual channel is massive or an outlier apart from the first position."
        )
        if len(sink) and sink["first_position_ratio"].max() >= 100:
            worst = sink.loc[sink["first_position_ratio"].idxmax()]
            others = (
                f", and other tokens reach {worst['max_ratio']:.0f}x in the same channel, which the robust view leaves out"
                if worst["excluded"]
                else ""
            )
            text += (
                f" The attention sink (first position) reaches {worst['first_position_ratio']:.0f}x a typical channel "
                f"(channel {int(worst['channel'])}, layer {int(worst['layer'])}){others}; every statistic leaves the "
                f"first position out."
            )
        lines.append(text)
    robust = acts[acts["variant"] == "robust"]
    raw = acts[acts["variant"] == "raw"]
    by_domain = _domains(robust).groupby("domain")["effective_rank"].mean().sort_values()
    raw_by_domain = _domains(raw).groupby("domain")["effective_rank"].mean()
    null = robust["effective_rank_null"].mean()
    controls = robust[robust["domain"].str.startswith("control:")].groupby("domain")["effective_rank"].mean()
    if len(by_domain):
        lines.append(
            f"Activation effective rank (robust, mean over layers): from {by_domain.iloc[0]:.0f} ({by_domain.index[0]}) to "
            f"{by_domain.iloc[-1]:.0f} ({by_domain.index[-1]}); the raw view reads {raw_by_domain.min():.1f} to "
            f"{raw_by_domain.max():.1f} because a few channels dominate. Controls: isotropic noise at the same n/d "
            f"{null:.0f}, random tokens {controls.get(RANDOM_TOKENS, np.nan):.0f}, randomized weights "
            f"{controls.get(RANDOMIZED_WEIGHTS, np.nan):.0f} (n/d = {robust['n_over_d'].median():.1f})."
            f"{_dominated_layers(robust)}"
        )
        if "effective_rank_lo" in robust:
            lines.extend(_rank_interval_line(robust))
    return lines


def _rank_interval_line(robust: pd.DataFrame) -> list[str]:
    """The domains' robust effective ranks at the layer with jackknife intervals, lowest and highest
    (and the runner-up when its interval overlaps), and whether the first layer already orders the
    domains the same way (then the ranks follow the corpora's variety more than the layers)."""
    at = robust[robust["effective_rank_lo"].notna()]
    doms = _domains(at).sort_values("effective_rank")
    if len(doms) < 2:
        return []
    lo, hi = doms.iloc[0], doms.iloc[-1]
    apart = "do not overlap" if lo["effective_rank_hi"] < hi["effective_rank_lo"] else "overlap"
    control = at[at["domain"] == RANDOM_TOKENS]
    ctrl = f"; random tokens {ci(control.iloc[0], 'effective_rank', 0)}" if len(control) else ""
    text = (
        f"At layer {int(lo['layer'])} (intervals: delete-a-group jackknife over groups of texts), the robust "
        f"effective rank is lowest for {lo['domain']} {ci(lo, 'effective_rank', 0)}{_one_direction(lo)}"
        f"{_runner_up(doms, 'effective_rank', 0, low=True)} "
        f"and highest for {hi['domain']} {ci(hi, 'effective_rank', 0)}{_runner_up(doms, 'effective_rank', 0)}; "
        f"the extremes' intervals {apart}{ctrl}."
    )
    first = _domains(robust[robust["layer"] == robust["layer"].min()]).set_index("domain")["effective_rank"]
    same = first.reindex(doms["domain"]).dropna()
    if (
        len(same) >= 4
        and spearman(same.to_numpy(), doms.set_index("domain").loc[same.index, "effective_rank"].to_numpy()) >= 0.8
    ):
        order = ", ".join(f"{d} {v:.0f}" for d, v in first.sort_values().items())
        text += (
            f" The first layer already orders the domains nearly so ({order}): the ranks follow how varied each "
            f"corpus is as much as what the layers do."
        )
    return [text]


ONE_DIRECTION = 0.5
"""A robust spectrum whose top eigenvalue holds more than this share of the variance is reported
as dominated by one direction: on SmolLM2's arithmetic texts (about 9 tokens each) it is 74 % at
layer 15, 90 % of it carried by 27 of 3,658 tokens, all at the second position, each over 100x
the median token along it, in channels that are not flagged massive (found by projecting the
tokens on the top eigenvector; the robust view leaves channels out, not tokens)."""


def _dominated_layers(robust: pd.DataFrame) -> str:
    """A sentence naming the domains whose robust spectrum has one direction above
    :data:`ONE_DIRECTION` of the variance, and in how many layers ("" when none has)."""
    if "top_share" not in robust:
        return ""
    counts = _domains(robust[robust["top_share"] > ONE_DIRECTION]).groupby("domain")["layer"].nunique()
    if counts.empty:
        return ""
    parts = ", ".join(f"{d} in {n} of {robust['layer'].nunique()} layers" for d, n in counts.items())
    return (
        f" One direction holds over {ONE_DIRECTION:.0%} of the robust variance for {parts}: there the rank "
        f"describes that direction (a few outlier tokens can make one), not the domain's spread."
    )


def _one_direction(row) -> str:
    """What to add after a robust effective rank whose top eigenvalue holds more than
    :data:`ONE_DIRECTION` of the variance ("" otherwise)."""
    share = row.get("top_share", np.nan)
    if not share > ONE_DIRECTION:
        return ""
    return f" (one direction holds {share:.0%} of its robust variance, which a few outlier tokens can produce)"


def _runner_up(doms: pd.DataFrame, column: str, digits: int, low: bool = False) -> str:
    """ " (<domain> <interval> overlaps it)" when the second lowest (``low``) or second highest of
    ``doms`` (sorted ascending by ``column``) has an interval overlapping the extreme's, else ""."""
    if len(doms) < 3:
        return ""
    extreme, second = (doms.iloc[0], doms.iloc[1]) if low else (doms.iloc[-1], doms.iloc[-2])
    overlaps = second[f"{column}_lo"] <= extreme[f"{column}_hi"] and extreme[f"{column}_lo"] <= second[f"{column}_hi"]
    return f" ({second['domain']} {ci(second, column, digits)} overlaps it)" if overlaps else ""


def energy_findings(t: StudyTables) -> list[str]:
    energy = t.get("activations", "energy")
    if energy is None or energy.empty:
        return []
    mid = energy[energy["layer"] == energy["layer"].max() // 2]
    doms = _domains(mid).sort_values("energy_mean")
    control = mid[mid["domain"] == RANDOM_TOKENS]
    if doms.empty:
        return []
    hi, lo = doms.iloc[-1], doms.iloc[0]
    separated = hi["energy_mean_lo"] > lo["energy_mean_hi"]
    text = (
        f"Token energy at layer {int(hi['layer'])} (0.5 = the reference texts' own average; the domains' held-out "
        f"texts average {doms['energy_mean'].mean():.2f}): highest for {hi['domain']} {ci(hi, 'energy_mean')}"
        f"{_runner_up(doms, 'energy_mean', 2)}, lowest for {lo['domain']} {ci(lo, 'energy_mean')}"
        f"{_runner_up(doms, 'energy_mean', 2, low=True)} (intervals over texts"
        f"{'; the extremes do not overlap' if separated else '; they overlap: no difference is claimed'})"
    )
    if len(control):
        row = control.iloc[0]
        text += f"; random tokens (control) {ci(row, 'energy_mean')}"
        if row["energy_mean"] > hi["energy_mean"]:
            text += ", above every domain: the energy reads distance from the reference texts, not domain knowledge"
    return [text + "."]


def mechanism_findings(t: StudyTables) -> list[str]:
    heads, scores = t.get("mechanisms", "ablation_heads"), t.get("mechanisms", "head_scores")
    if heads is None or scores is None or heads.empty:
        return []
    top = scores.sort_values("induction", ascending=False).iloc[0]
    confirmed = heads[heads["confirmed"]].sort_values("damage", ascending=False)
    lines = [
        (
            f"Induction: the second copy of repeated random text has loss {_score(heads.iloc[0], 'baseline')} nats "
            f"against {_score(heads.iloc[0], 'first_copy_loss')} for the first copy (intervals over sequences); "
            f"the top induction head by attention is "
            f"{int(top['layer'])}.{int(top['head'])} (score {_score(top, 'induction')}; interval over sequences)."
        )
    ]
    hurt = confirmed[confirmed["damage_lo"] > 0]
    if len(hurt):
        control = "damage_first_copy" in hurt
        parts = [
            f"{int(r['layer'])}.{int(r['head'])} +{ci(r, 'damage', 3)}"
            + (f" (first copy {ci(r, 'damage_first_copy', 3, signed=True)})" if control else "")
            for _, r in hurt.head(4).iterrows()
        ]
        lines.append(
            f"Mean-ablating single heads raises that loss (re-measured on {int(confirmed['n_confirm'].iloc[0])} fresh "
            f"sequences; intervals exclude 0"
            + (
                "; in parentheses the same ablation on the first copy, which induction cannot predict"
                if control
                else ""
            )
            + f"): {'; '.join(parts)} nats."
        )
    else:
        lines.append("No single head's mean ablation raises the induction loss with an interval that excludes 0.")
    return lines


def _score(row, kind: str) -> str:
    return ci(row, kind) if f"{kind}_lo" in row else f"{row[kind]:.2f}"


def overlap_findings(t: StudyTables) -> list[str]:
    overlap = t.get("activations", "overlap")
    if overlap is None or overlap.empty:
        return []
    tail = overlap[(overlap["part"] == "tail") & (overlap["variant"] == "robust") & (overlap["k"] > 0)]
    lines, mixed = [], []
    for role, g in _domains(tail).groupby("role"):
        above = (g["enrichment_lo"] > 1).mean()
        below = (g["enrichment_hi"] < 1).mean()
        if max(above, below) < MOST:
            mixed.append(f"{role} {above:.0%} / {below:.0%}")
            continue
        direction = "more" if above >= below else "less"
        share = max(above, below)
        controls = (
            tail[(tail["role"] == role) & (tail["domain"] == RANDOM_TOKENS)].groupby("block")["enrichment"].median()
        )
        per_layer = g.groupby("block")["enrichment"].median().reindex(controls.index).dropna()
        beyond = (
            per_layer > controls.loc[per_layer.index]
            if direction == "more"
            else per_layer < controls.loc[per_layer.index]
        )
        versus = (
            f"; the domains' median is {'above' if direction == 'more' else 'below'} random tokens' in "
            f"{int(beyond.sum())} of {len(per_layer)} layers"
            if len(per_layer)
            else ""
        )
        lines.append(
            f"The power-law tails of {role} matrices (median {g['k'].median():.0f} of {g['d_in'].median():.0f} "
            f"directions) read {direction} of each domain's input variance than random subspaces of the same size: "
            f"median enrichment {g['enrichment'].median():.2f}x, with the interval over texts excluding 1 for "
            f"{share:.0%} of (layer, domain) pairs (robust view"
            f"{f'; random tokens: {controls.median():.2f}x{versus}' if len(controls) else ''})."
        )
    if not lines:
        lines.append(
            "Eigenmode overlap: for no role do two thirds of the tails read more (or less) of the domains' "
            "variance than random subspaces (robust view, intervals over texts)."
        )
    elif mixed:
        lines.append(
            f"The power-law tails of the other roles read neither consistently more nor less than random "
            f"subspaces (share of (layer, domain) intervals above 1 / below 1: {'; '.join(mixed)}; robust view)."
        )
    return lines


def ablation_findings(t: StudyTables) -> list[str]:
    abl, layer_damage = t.get("bridge", "ablation_domains"), t.get("bridge", "layer_damage")
    lines = []
    if layer_damage is not None and len(layer_damage):
        lines.append(_layer_sweep_line(layer_damage))
    if abl is not None and len(abl):
        control = abl[abl["domain"] == RANDOM_TOKENS].set_index("component")
        doms = _domains(abl)
        spectral = doms[doms["edit"].isin(["tail", "bulk"])] if "edit" in doms else doms.iloc[:0]
        for component, g in doms.drop(spectral.index).groupby("component", sort=False):
            if (g["damage_lo"] > 0).all():
                lines.append(f"{edit_label(component)}: {_damage_range(g, control, component)}.")
        matrices = spectral["component"].str.rsplit(":", n=1).str[0]
        for matrix, g in spectral.groupby(matrices, sort=False):
            lines.extend(_spectral_pair_line(matrix, g, control))
        if not (doms.groupby("component")["damage_lo"].min() > 0).any():
            lines.append("No edit of the compared layer hurts every domain with an interval above 0.")
    return lines


def _layer_sweep_line(layer_damage: pd.DataFrame) -> str:
    """The three most damaging blocks of the pooled sweep, what the pooled sample is made of, and
    whether the third is told apart from the fourth."""
    pooled = layer_damage[layer_damage["domain"] == "pooled"].sort_values("damage", ascending=False)
    parts = [f"{edit_label(r['component'])} +{ci(r, 'damage')}" for _, r in pooled.head(3).iterrows()]
    texts = layer_damage[layer_damage["domain"] != "pooled"].groupby("domain")["n_rows"].first()
    thin = texts[texts < MIN_INTERVAL_UNITS]
    most = _texts(int(thin.max())) if len(thin) else ""
    made_of = f"{int(pooled['n_rows'].iloc[0])} texts" + (
        f", equal tokens per domain, of which {', '.join(thin.index)} "
        f"{f'{most} each' if thin.min() == thin.max() else f'at most {most} each'}"
        if len(thin)
        else ""
    )
    tie = ""
    if len(pooled) >= 4 and pooled.iloc[2]["damage_lo"] <= pooled.iloc[3]["damage_hi"]:
        fourth = pooled.iloc[3]
        tie = (
            f" (the third's interval overlaps the fourth's, {edit_label(fourth['component'])} +{ci(fourth, 'damage')})"
        )
    return f"Mean-ablating one block at a time (pooled domains: {made_of}): the most damaging are {'; '.join(parts)} nats{tie}."


def _texts(n: int) -> str:
    """``n`` texts in words: "1 text", "2 texts"."""
    return f"{n} text" if n == 1 else f"{n} texts"


def _damage_range(g: pd.DataFrame, control: pd.DataFrame, component: str) -> str:
    """The domains' damage range and how many intervals exclude 0, the random-token control, and,
    when every domain is hurt, where the control falls against the domains' range."""
    above, below = int((g["damage_lo"] > 0).sum()), int((g["damage_hi"] < 0).sum())
    every = "every interval above 0" if above == len(g) else f"{above} of {len(g)} intervals above 0, {below} below"
    text = f"{g['damage'].min():+.2f} to {g['damage'].max():+.2f} nats across domains, {every}"
    if component not in control.index:
        return text
    row = control.loc[component]
    if above < len(g):
        return f"{text}; random tokens {ci(row, 'damage')}"
    if row["damage"] >= g["damage"].min():
        where = "within" if row["damage"] <= g["damage"].max() else "above"
        return f"{text}; random tokens {ci(row, 'damage')}, {where} the domains' range: not specific to the domains"
    return f"{text}; random tokens {ci(row, 'damage')}, below every domain"


def _spectral_pair_line(matrix: str, g: pd.DataFrame, control: pd.DataFrame) -> list[str]:
    """One matrix's two spectral edits side by side: keeping only its power-law tail and removing it."""
    by_edit = {edit: rows for edit, rows in g.groupby("edit")}
    if "tail" not in by_edit or "bulk" not in by_edit:
        return []
    keep, drop = by_edit["tail"], by_edit["bulk"]
    name = edit_label(f"{matrix}:tail").split(":")[0]
    return [
        (
            f"{name}, keeping only its power-law tail: {_damage_range(keep, control, keep['component'].iloc[0])}. "
            f"Removing the tail instead: {_damage_range(drop, control, drop['component'].iloc[0])}."
        )
    ]


def correlation_findings(t: StudyTables) -> list[str]:
    corr = t.get("bridge", "correlation")
    if corr is None or corr.empty:
        return []
    lines = []
    heads = t.get("mechanisms", "ablation_heads")
    screen = (
        f"; a head's damage is the loss on repeated random text's second copy, from the sweep's screen of "
        f"{int(heads['n_screen'].iloc[0])} sequences"
        if heads is not None and len(heads) and "n_screen" in heads
        else ""
    )
    for family, g in corr.groupby("family"):
        survivors = g[g["q_value"] < Q_LEVEL].sort_values("q_value")
        nominal = int((g["p_value"] < 0.05).sum())
        about = screen if family == "heads" else ""
        if survivors.empty:
            lines.append(
                f"Spectra vs causal importance ({family}{about}): none of {len(g)} rank correlations survives "
                f"Benjamini-Hochberg at q < {Q_LEVEL} ({nominal} {'has' if nominal == 1 else 'have'} p < 0.05 uncorrected, "
                f"{0.05 * len(g):.2g} expected by chance)."
            )
        else:
            parts = [
                f"{r['metric']} vs {r['target']} (rho {r['rho']:+.2f}, q = {r['q_value']:.3f}, n = {int(r['n'])})"
                for _, r in survivors.head(4).iterrows()
            ]
            checked = [_order_check_text(r) for _, r in survivors.head(4).iterrows()]
            checks = f" Checks that try to break them (uncorrected): {' '.join(checked)}" if all(checked) else ""
            lines.append(
                f"Spectra vs causal importance ({family}{about}): {len(survivors)} of {len(g)} correlations survive "
                f"BH at q < {Q_LEVEL}: {'; '.join(parts)}.{checks}"
            )
    return lines


def _order_check_text(r) -> str:
    """What the checks of an ordered correlation (:func:`~spectrascope.bridge.correlation.order_checks`)
    say about one surviving row: "" when the row has none (components without an order)."""
    if "p_shift" not in r or not np.isfinite(r["p_shift"]):
        return ""
    checks = [
        (f"given depth (rho {r['rho_given_order']:+.2f}, p = {r['p_given_order']:.3f})", r["p_given_order"] < 0.05),
        (
            f"against circular shifts of the layers (p = {r['p_shift']:.3f}; at least 1/n = {1 / r['n']:.3f})",
            r["p_shift"] <= 0.05,
        ),
        (
            f"without the first and last layer (rho {r['rho_trimmed']:+.2f}, p = {r['p_trimmed']:.3f})",
            r["p_trimmed"] < 0.05,
        ),
    ]
    name = f"{r['metric']} vs {r['target']}"
    failed = [text for text, ok in checks if not ok]
    if not failed:
        return f"{name} holds {', '.join(text for text, _ in checks[:-1])} and {checks[-1][0]}."
    return f"{name} does not hold {' or '.join(failed)}."


def alignment_findings(t: StudyTables) -> list[str]:
    """Next-layer alignment against the shuffled-weights null, with the layer transition as the
    unit: the pairs of one transition (each writer of layer L with each reader of L + 1) share
    their matrices, so they are not independent tests. Counting pairs as independent made 190 of
    290 on SmolLM2 look decisive (sign test p = 1e-7); per transition it is 19 of 29 (p = 0.14),
    and the excess is concentrated in the first two thirds of depth."""
    align = t.get("bridge", "alignment")
    if align is None or align.empty:
        return []
    near = align[align["reader_layer"] == align["writer_layer"] + 1]
    if near.empty:
        return []
    real, null = near["enrichment"], near["enrichment_shuffled"]
    excess = (real - null).groupby(near["writer_layer"])
    above = (real > null).groupby(near["writer_layer"])
    per_step, n_steps = excess.median(), excess.ngroups
    share = weighted_mean_interval(above.mean().to_numpy(), above.size().to_numpy())
    n_up = int((per_step > 0).sum())
    sign_p = binomtest(n_up, n_steps, 0.5).pvalue
    rank_p = wilcoxon(per_step.to_numpy()).pvalue if n_steps >= 6 and (per_step != 0).any() else np.nan
    count = f"the median pair is above in {n_up} of {n_steps} transitions"
    if rank_p < Q_LEVEL and per_step.median() > 0:
        verdict = f"the excess over the shuffle is positive (signed-rank test over transitions p = {rank_p:.3g})"
        verdict += (
            f", and {count} (sign test p = {sign_p:.3g})"
            if sign_p < Q_LEVEL
            else f", but {count}, not clearly more than half (sign test p = {sign_p:.3g})"
        )
    else:
        verdict = f"the excess over the shuffle is not clearly positive (signed-rank test over transitions p = {rank_p:.3g}; {count}, sign test p = {sign_p:.3g})"
    thirds = [g for g in np.array_split(np.sort(per_step.index.to_numpy()), 3) if len(g)]
    by_depth = ", ".join(f"{(real > null)[near['writer_layer'].isin(g)].mean():.0%}" for g in thirds)
    return [
        (
            f"Cross-layer alignment (next layer's readers, norm gains folded in): median tail enrichment {real.median():.2f}x "
            f"a random subspace, against {null.median():.2f}x for the same pairs with shuffled weights. With the layer "
            f"transition as the unit (its pairs share matrices), {verdict}; {share.estimate:.0%} [{share.lo:.0%}, "
            f"{share.hi:.0%}] of the {len(near)} pairs are above (bootstrap over transitions), by thirds of depth {by_depth}."
        )
    ]


def cka_findings(t: StudyTables) -> list[str]:
    cka, null = t.get("activations", "cka"), t.get("activations", "cka_null")
    if cka is None or cka.empty:
        return []
    medians = t.get("activations", "cka_adjacent")
    adjacent = cka[cka["layer_b"] == cka["layer_a"] + 1]
    parts = []
    for variant, g in sorted(adjacent.groupby("variant"), key=lambda item: item[0] != "robust"):  # robust first
        noise = null[null["variant"] == variant]["cka"].abs().max() if null is not None else np.nan
        row = None if medians is None else medians[medians["variant"] == variant]
        value = ci(row.iloc[0], "cka") if row is not None and len(row) else f"{g['cka'].median():.2f}"
        low = g.loc[g["cka"].idxmin()]
        left_out = (
            f", the {int(g['n_excluded'].iloc[0])} channels massive at any layer left out of every layer"
            if variant == "robust" and "n_excluded" in g
            else ""
        )
        parts.append(
            f"{variant} {value} (permuted-token null: |CKA| <= {noise:.3f}; lowest {low['cka']:.2f}, layers "
            f"{int(low['layer_a'])} to {int(low['layer_b'])}{left_out}{_few_tokens(row, int(low['layer_a']))})"
        )
    jackknife = (
        f"; intervals: delete-a-group jackknife over {int(medians['n_groups'].iloc[0])} groups of consecutive texts, "
        "on Fisher's z scale"
        if medians is not None and len(medians)
        else ""
    )
    return [
        (
            f"Debiased CKA between adjacent layers on {int(cka['n_tokens'].iloc[0])} tokens, median: "
            f"{'; '.join(parts)}{jackknife}."
        )
    ]


def _few_tokens(row: pd.DataFrame | None, layer_a: int) -> str:
    """The lowest adjacent CKA (layers ``layer_a``, ``layer_a + 1``) again without the tokens of
    largest norm, and whether they make it (leaving them out closes over half the gap to the median)."""
    if row is None or not len(row) or "lowest_cka_without_top_tokens" not in row:
        return ""
    r = row.iloc[0]
    if int(r["lowest_layer_a"]) != layer_a:
        return ""
    closed = r["lowest_cka_without_top_tokens"] - r["lowest_cka"] > (r["cka"] - r["lowest_cka"]) / 2
    verdict = ": a few tokens make it" if closed else ""
    return (
        f"; {r['lowest_cka_without_top_tokens']:.2f} without the {int(r['n_top_tokens'])} tokens of largest "
        f"norm{verdict}"
    )


def attribution_findings(t: StudyTables) -> list[str]:
    agree = t.get("activations", "energy_agreement")
    if agree is None or agree.empty:
        return []
    given = agree["given"] if "given" in agree else pd.Series("", index=agree.index)
    pair = agree[(agree["a"] == "energy_change") & (agree["b"] == "|grad_x_input|")]
    plain, partial = pair[given[pair.index] == ""], pair[given[pair.index] == "position"]
    if plain.empty:
        return []
    r = plain.iloc[0]
    line = (
        f"Energy vs attribution: per-text rank correlation of the energy change with |gradient x input| averages "
        f"{ci(r, 'rho')} over {int(r['n_texts'])} texts; against shuffled tokens it {_verdict(r)} (q = {r['q_value']:.3f})."
    )
    if len(partial):
        p = partial.iloc[0]
        line += (
            f" Both follow position within a text; given position (partial rank correlation, residuals shuffled) "
            f"it is {ci(p, 'rho')} over {int(p['n_texts'])} texts and {_verdict(p)} (q = {p['q_value']:.3f})."
        )
    return [line]


def _verdict(row) -> str:
    return "survives" if row["q_value"] < Q_LEVEL else "does not survive"


def circuit_findings(t: StudyTables) -> list[str]:
    table = t.get("circuits", "circuits")
    if table is None or table.empty:
        return []
    lines = []
    for r in table.to_dict("records"):
        if r["status"] != "ok":
            lines.append(f"Circuit of {r['task']}: {r['status']}.")
            continue
        line = (
            f"Circuit of {r['task']} ({r['method']}, {int(r['n_prompts'])} prompts, verified by edge patching): "
            f"{int(r['size'])} of {int(r['n_edges']):,} edges [{r['size_lo']:.0f}, {r['size_hi']:.0f}] keep "
            f"{ci(r, 'faithfulness')} of the clean-corrupted gap ({int(r['n_heads'])} heads, {int(r['n_mlps'])} MLPs)."
        )
        if "prior_p" in r and pd.notna(r.get("prior_p")):
            verdict = "beats" if r["prior_p"] < Q_LEVEL else "does not beat"
            line += (
                f" Ranking edges by the alignment of the writer's power-law tail with the reader {verdict} random "
                f"rankings (average precision {r['prior_average_precision']:.4f} vs {r['prior_random_ap']:.4f}, "
                f"p = {r['prior_p']:.3f})."
            )
        lines.append(line)
    return lines


def budget_findings(t: StudyTables, budget: StudyBudget | None) -> list[str]:
    """One sentence when the study's budgets are below what its statistics need (a smoke run)."""
    if budget is None:
        return []
    acts = t.get("activations", "activations")
    d_model = int(acts["d"].max()) if acts is not None and len(acts) else None  # widest covariance
    short = budget.shortfalls(d_model)
    if not short:
        return []
    return [
        "This is a smoke run, not a result: its budgets are below what the statistics need ("
        + ", ".join(short)
        + " wanted), so the intervals and tests below are not to be read as findings "
        "(run the default budget)."
    ]


def overview(t: StudyTables, model: str, budget: StudyBudget | None = None) -> list[str]:
    """Every finding, in the report's order; first, a smoke-run warning when ``budget`` is below
    what the statistics need (:meth:`StudyBudget.shortfalls`)."""
    out: list[str] = budget_findings(t, budget)
    for part in (
        weights_findings(t, model),
        activation_findings(t),
        energy_findings(t),
        mechanism_findings(t),
        overlap_findings(t),
        ablation_findings(t),
        correlation_findings(t),
        alignment_findings(t),
        cka_findings(t),
        attribution_findings(t),
        circuit_findings(t),
    ):
        out += part
    return out
