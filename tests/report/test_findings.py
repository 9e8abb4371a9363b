"""The overview states only what survives: hand-made tables in, the sentences they allow out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spectrascope.activations.controls import RANDOM_TOKENS
from spectrascope.report.findings import (
    ablation_findings,
    activation_findings,
    alignment_findings,
    attribution_findings,
    budget_findings,
    circuit_findings,
    cka_findings,
    correlation_findings,
    energy_findings,
    mechanism_findings,
    overlap_findings,
    weights_findings,
)
from spectrascope.report.tables import StudyTables
from spectrascope.study.budget import StudyBudget


def _tables(tmp_path: Path, **tables: pd.DataFrame) -> StudyTables:
    """A study folder with ``stage__table`` DataFrames written where the report reads them."""
    for key, table in tables.items():
        stage, name = key.split("__")
        (tmp_path / stage).mkdir(parents=True, exist_ok=True)
        table.to_parquet(tmp_path / stage / f"{name}.parquet")
    return StudyTables(tmp_path)


def _overlap_rows(role: str, intervals: list[tuple[float, float]], domain_prefix: str = "d") -> list[dict]:
    return [
        {
            "part": "tail",
            "variant": "robust",
            "k": 3,
            "role": role,
            "domain": f"{domain_prefix}{i}",
            "layer": 0,
            "block": 0,
            "d_in": 64,
            "enrichment": (lo + hi) / 2,
            "enrichment_lo": lo,
            "enrichment_hi": hi,
        }
        for i, (lo, hi) in enumerate(intervals)
    ]


def test_overlap_is_stated_only_when_two_thirds_of_the_intervals_exclude_one(tmp_path):
    rows = (
        _overlap_rows("k", [(1.2, 1.5), (1.1, 1.3), (1.05, 1.4)])  # 3 of 3 above 1
        + _overlap_rows("v", [(0.5, 0.8), (0.6, 0.9), (0.9, 1.2)])  # 2 of 3 below 1
        + _overlap_rows("q", [(1.1, 1.3), (0.9, 1.1), (0.8, 1.05)])  # 1 of 3: nothing claimed
        + [
            {
                "part": "tail",
                "variant": "robust",
                "k": 3,
                "role": "k",
                "domain": RANDOM_TOKENS,
                "layer": 0,
                "block": 0,
                "d_in": 64,
                "enrichment": 1.07,
                "enrichment_lo": 0.9,
                "enrichment_hi": 1.2,
            }
        ]
    )
    lines = overlap_findings(_tables(tmp_path, activations__overlap=pd.DataFrame(rows)))
    assert len(lines) == 3
    k_line, v_line, q_line = lines  # the decided roles in order, then the undecided ones
    assert (
        k_line.startswith("The power-law tails of k matrices (median 3 of 64 directions) read more")
        and "100%" in k_line
    )
    # the domains' median 1.25 against the control's 1.07 in the one layer
    assert "random tokens: 1.07x; the domains' median is above random tokens' in 1 of 1 layers)" in k_line
    assert "of v matrices (median 3 of 64 directions) read less" in v_line and "67%" in v_line
    assert v_line.endswith("(layer, domain) pairs (robust view).")  # no control rows: none is named
    # q: 1 of 3 intervals above 1, none below: said plainly, not dropped
    assert q_line == (
        "The power-law tails of the other roles read neither consistently more nor less than random "
        "subspaces (share of (layer, domain) intervals above 1 / below 1: q 33% / 0%; robust view)."
    )


def test_overlap_without_a_majority_says_nothing_survives(tmp_path):
    rows = _overlap_rows("q", [(1.1, 1.3), (0.9, 1.1), (0.8, 1.05)])
    (line,) = overlap_findings(_tables(tmp_path, activations__overlap=pd.DataFrame(rows)))
    assert line.startswith("Eigenmode overlap: for no role")


def test_correlations_are_claimed_by_their_q_value_not_their_p_value(tmp_path):
    corr = pd.DataFrame(
        {
            "family": ["layers"] * 3,
            "metric": ["alpha", "erg_delta", "stable_rank"],
            "target": ["damage"] * 3,
            "rho": [0.6, -0.2, 0.1],
            "p_value": [0.001, 0.04, 0.5],
            "q_value": [0.003, 0.06, 0.5],
            "n": [30, 30, 30],
        }
    )
    (line,) = correlation_findings(_tables(tmp_path, bridge__correlation=corr))
    assert "1 of 3 correlations survive" in line and "alpha vs damage (rho +0.60, q = 0.003" in line
    assert "erg_delta" not in line
    corr["q_value"] = [0.2, 0.2, 0.5]
    (line,) = correlation_findings(_tables(tmp_path / "none", bridge__correlation=corr))
    assert "none of 3 rank correlations survives" in line and "2 have p < 0.05 uncorrected" in line


def test_a_surviving_layer_correlation_says_which_checks_it_holds_and_which_break_it(tmp_path):
    corr = pd.DataFrame(
        {
            "family": ["layers"] * 2,
            "metric": ["activation_alpha", "activation_effective_rank"],
            "target": ["mlp_damage"] * 2,
            "rho": [-0.57, -0.46],
            "p_value": [0.001, 0.006],
            "q_value": [0.018, 0.036],
            "n": [30, 30],
            "rho_given_order": [-0.58, -0.48],
            "p_given_order": [0.001, 0.004],
            "p_shift": [1 / 30, 2 / 30],
            "rho_trimmed": [-0.48, -0.34],
            "p_trimmed": [0.008, 0.087],
        }
    )
    (line,) = correlation_findings(_tables(tmp_path, bridge__correlation=corr))
    assert "2 of 2 correlations survive" in line
    assert (
        "activation_alpha vs mlp_damage holds given depth (rho -0.58, p = 0.001), against circular shifts of the "
        "layers (p = 0.033; at least 1/n = 0.033) and without the first and last layer (rho -0.48, p = 0.008)."
    ) in line
    assert (
        "activation_effective_rank vs mlp_damage does not hold against circular shifts of the layers "
        "(p = 0.067; at least 1/n = 0.033) or without the first and last layer (rho -0.34, p = 0.087)."
    ) in line


def test_attribution_verdict_follows_the_q_value(tmp_path):
    agree = pd.DataFrame(
        [
            {
                "a": "energy_change",
                "b": "|grad_x_input|",
                "rho": 0.30,
                "rho_lo": 0.1,
                "rho_hi": 0.5,
                "n_texts": 12,
                "q_value": 0.01,
            }
        ]
    )
    (line,) = attribution_findings(_tables(tmp_path, activations__energy_agreement=agree))
    assert "0.30 [0.10, 0.50] over 12 texts" in line and "it survives (q = 0.010)" in line
    agree["q_value"] = 0.2
    (line,) = attribution_findings(_tables(tmp_path / "b", activations__energy_agreement=agree))
    assert "does not survive (q = 0.200)" in line and "given position" not in line


def test_attribution_states_the_position_controlled_correlation(tmp_path):
    row = {"a": "energy_change", "b": "|grad_x_input|", "rho": -0.25, "rho_lo": -0.35, "rho_hi": -0.13, "n_texts": 24}
    agree = pd.DataFrame(
        [
            {**row, "given": "", "q_value": 0.002},
            {**row, "given": "position", "rho": -0.20, "rho_lo": -0.33, "rho_hi": -0.06, "q_value": 0.03},
        ]
    )
    (line,) = attribution_findings(_tables(tmp_path, activations__energy_agreement=agree))
    assert "-0.25 [-0.35, -0.13] over 24 texts" in line and "survives (q = 0.002)" in line
    assert "given position (partial rank correlation, residuals shuffled) it is -0.20 [-0.33, -0.06]" in line
    assert "survives (q = 0.030)" in line


def test_alignment_is_tested_with_the_layer_transition_as_the_unit(tmp_path):
    """One pair per transition: 9 of 10 above (sign test p = 0.0215, as for pairs); thirds of the
    10 transitions are 4, 3 and 3 of them."""
    align = pd.DataFrame(
        {
            "writer_layer": range(10),
            "reader_layer": range(1, 11),
            "enrichment": [2.0] * 9 + [0.5],
            "enrichment_shuffled": [1.0] * 10,
        }
    )
    (line,) = alignment_findings(_tables(tmp_path, bridge__alignment=align))
    assert "the excess over the shuffle is positive (signed-rank test over transitions p = " in line
    assert "and the median pair is above in 9 of 10 transitions (sign test p = 0.0215)" in line
    assert "by thirds of depth 100%, 100%, 67%" in line
    align["enrichment"] = [2.0] * 6 + [-0.5] * 4
    (line,) = alignment_findings(_tables(tmp_path / "b", bridge__alignment=align))
    assert "the excess over the shuffle is not clearly positive" in line


def test_pairs_of_one_transition_are_not_counted_as_independent_tests(tmp_path):
    """12 transitions of 10 pairs: 8 transitions entirely above, 4 entirely below. As 120
    independent pairs 80 above would be a sign-test p of 3e-4; per transition it is 8 of 12."""
    rows = [
        {
            "writer_layer": step,
            "reader_layer": step + 1,
            "enrichment": 2.0 if step < 8 else 0.0,
            "enrichment_shuffled": 1.0,
        }
        for step in range(12)
        for _ in range(10)
    ]
    (line,) = alignment_findings(_tables(tmp_path, bridge__alignment=pd.DataFrame(rows)))
    assert "not clearly positive" in line and "the median pair is above in 8 of 12 transitions" in line
    assert "67% [" in line and "of the 120 pairs are above (bootstrap over transitions)" in line


def test_circuit_rows_give_size_and_faithfulness_intervals_or_say_why_not(tmp_path):
    table = pd.DataFrame(
        [
            {
                "task": "geography",
                "status": "ok",
                "method": "eap-ig",
                "n_prompts": 16,
                "n_edges": 123211,
                "size": 532,
                "size_lo": 396,
                "size_hi": 977,
                "faithfulness": 0.8,
                "faithfulness_lo": 0.74,
                "faithfulness_hi": 0.86,
                "n_heads": 49,
                "n_mlps": 30,
                "prior_average_precision": 0.0067,
                "prior_random_ap": 0.0044,
                "prior_p": 0.002,
            },
            {"task": "calendar", "status": "skipped: circuits support the Llama family only"},
        ]
    )
    ok, skipped = circuit_findings(_tables(tmp_path, circuits__circuits=table))
    assert "532 of 123,211 edges [396, 977] keep 0.80 [0.74, 0.86]" in ok and "(49 heads, 30 MLPs)" in ok
    assert "beats random rankings (average precision 0.0067 vs 0.0044, p = 0.002)" in ok
    assert skipped == "Circuit of calendar: skipped: circuits support the Llama family only."


def test_weight_findings_count_analyzed_matrices_not_skipped_tensors(tmp_path):
    rows = [
        {"name": f"m{i}", "role": "q", "status": "success", "alpha": a, "erg_delta": 0.1, "alpha_weighted": 1.0}
        for i, a in enumerate([3.0, 4.0, 7.0])
    ]
    rows += [
        {"name": "m3", "role": "q", "status": "failed", "reason": "NaN"},
        {"name": "norm", "role": "norm", "status": "skipped", "reason": "a vector"},
        {"name": "norm2", "role": "norm", "status": "skipped", "reason": "a vector"},
    ]
    line = weights_findings(_tables(tmp_path, weights__weights=pd.DataFrame(rows)), "toy")[0]
    assert line.startswith("Weight spectra: a power-law fit ran on 3 of 4 analyzed matrices of toy (2 other tensors")
    assert "67% have alpha in [2, 6]" in line and "median alpha 4.00" in line


def test_heaviest_and_lightest_roles_carry_intervals_over_their_matrices(tmp_path):
    """q: alphas 2, 3, 4 (mean 3; a bootstrap mean stays within [2, 4]); o: all 6 (interval [6, 6])."""
    rows = [
        {"name": f"{role}{i}", "role": role, "status": "success", "alpha": a, "erg_delta": 0.0, "alpha_weighted": 1.0}
        for role, alphas in (("q", [2.0, 3.0, 4.0]), ("o", [6.0, 6.0, 6.0]))
        for i, a in enumerate(alphas)
    ]
    line = weights_findings(_tables(tmp_path, weights__weights=pd.DataFrame(rows)), "toy")[1]
    assert line.startswith("Heaviest tails: q (mean alpha 3.00 [")
    assert "over 3 matrices); lightest: o (6.00 [6.00, 6.00] over 3)" in line and "do not overlap" in line
    lo, hi = (float(x) for x in line.split("3.00 [")[1].split("]")[0].split(", "))
    assert 2.0 <= lo < 3.0 < hi <= 4.0


def test_top_induction_head_is_stated_with_its_interval(tmp_path):
    scores = pd.DataFrame(
        {
            "layer": [1, 2],
            "head": [0, 3],
            "induction": [0.2, 0.61],
            "induction_lo": [0.1, 0.55],
            "induction_hi": [0.3, 0.66],
        }
    )
    heads = pd.DataFrame(
        {
            "layer": [2],
            "head": [3],
            "baseline": [1.5],
            "baseline_lo": [1.4],
            "baseline_hi": [1.6],
            "first_copy_loss": [9.0],
            "first_copy_loss_lo": [8.5],
            "first_copy_loss_hi": [9.5],
            "confirmed": [True],
            "damage": [0.4],
            "damage_lo": [0.2],
            "damage_hi": [0.6],
            "n_confirm": [32],
        }
    )
    lines = mechanism_findings(_tables(tmp_path, mechanisms__head_scores=scores, mechanisms__ablation_heads=heads))
    assert (
        "has loss 1.50 [1.40, 1.60] nats against 9.00 [8.50, 9.50] for the first copy (intervals over sequences)"
        in lines[0]
    )
    assert "the top induction head by attention is 2.3 (score 0.61 [0.55, 0.66]; interval over sequences)" in lines[0]
    assert "2.3 +0.400 [0.200, 0.600]" in lines[1]
    with_control = heads.assign(damage_first_copy=[0.01], damage_first_copy_lo=[-0.02], damage_first_copy_hi=[0.04])
    lines = mechanism_findings(
        _tables(tmp_path / "control", mechanisms__head_scores=scores, mechanisms__ablation_heads=with_control)
    )
    assert "2.3 +0.400 [0.200, 0.600] (first copy +0.010 [-0.020, +0.040])" in lines[1]
    assert "the same ablation on the first copy, which induction cannot predict" in lines[1]


def test_adjacent_cka_median_is_stated_with_its_jackknife_interval(tmp_path):
    cka = pd.DataFrame(
        {"layer_a": [0, 1, 0], "layer_b": [1, 2, 2], "cka": [0.9, 0.8, 0.5], "variant": "robust", "n_tokens": 4096}
    )
    null = pd.DataFrame({"variant": ["robust"], "layer_a": [0], "layer_b": [1], "cka": [-0.004]})
    medians = pd.DataFrame(
        {"variant": ["robust"], "cka": [0.85], "cka_lo": [0.81], "cka_hi": [0.89], "n_groups": [16], "n_pairs": [2]}
    )
    tables = _tables(tmp_path, activations__cka=cka, activations__cka_null=null, activations__cka_adjacent=medians)
    (line,) = cka_findings(tables)
    assert (
        "on 4096 tokens, median: robust 0.85 [0.81, 0.89] (permuted-token null: |CKA| <= 0.004; lowest 0.80, "
        "layers 1 to 2)"
    ) in line
    assert "jackknife over 16 groups of consecutive texts" in line


def _rank_row(domain: str, layer: int, er: float, lo=None, hi=None, share: float = 0.1) -> dict:
    """A robust activation-spectrum row (effective rank, its interval where given, top share)."""
    return {
        "site": "resid_post",
        "layer": layer,
        "domain": domain,
        "variant": "robust",
        "effective_rank": er,
        "effective_rank_lo": lo,
        "effective_rank_hi": hi,
        "effective_rank_null": 400.0,
        "n_over_d": 8.0,
        "top_share": share,
    }


def test_effective_rank_at_the_interval_layer_is_stated_with_its_jackknife_interval(tmp_path):
    rows = [_rank_row("code", 0, 50.0), _rank_row("legal", 0, 90.0), _rank_row(RANDOM_TOKENS, 0, 300.0)]
    rows += [_rank_row("code", 1, 60.0, 55.0, 65.0), _rank_row("legal", 1, 100.0, 92.0, 108.0)]
    rows += [_rank_row(RANDOM_TOKENS, 1, 310.0, 300.0, 320.0)]
    acts = pd.DataFrame(rows + [{**r, "variant": "raw"} for r in rows])
    lines = activation_findings(_tables(tmp_path, activations__activations=acts))
    assert "At layer 1 (intervals: delete-a-group jackknife over groups of texts)" in lines[-1]
    assert (
        "lowest for code 60 [55, 65] and highest for legal 100 [92, 108]; the extremes' intervals do not overlap"
    ) in lines[-1]
    assert "random tokens 310 [300, 320]" in lines[-1]


def test_effective_rank_names_an_overlapping_runner_up_and_an_order_the_first_layer_already_has(tmp_path):
    first = [_rank_row(d, 0, v) for d, v in (("a", 10.0), ("b", 20.0), ("c", 80.0), ("d", 90.0))]
    later = [
        _rank_row("a", 3, 4.0, 3.0, 5.0),
        _rank_row("b", 3, 40.0, 38.0, 42.0),
        _rank_row("c", 3, 190.0, 185.0, 195.0),
    ]
    later += [_rank_row("d", 3, 197.0, 189.0, 205.0)]
    rows = first + later
    acts = pd.DataFrame(rows + [{**r, "variant": "raw"} for r in rows])
    line = activation_findings(_tables(tmp_path, activations__activations=acts))[-1]
    assert "highest for d 197 [189, 205] (c 190 [185, 195] overlaps it)" in line
    assert "lowest for a 4 [3, 5] and" in line  # b's interval does not reach a's
    assert "The first layer already orders the domains nearly so (a 10, b 20, c 80, d 90)" in line
    later[-1] = _rank_row("d", 3, 1.0, 0.5, 1.5)  # now d is lowest at layer 3: the first layer's order is not kept
    rows = first + later
    acts = pd.DataFrame(rows + [{**r, "variant": "raw"} for r in rows])
    assert "already orders" not in activation_findings(_tables(tmp_path / "b", activations__activations=acts))[-1]


def _damage(domain: str, component: str, damage: float, half: float, edit: str = "block", n_rows: int = 20) -> dict:
    return {
        "domain": domain,
        "component": component,
        "edit": edit,
        "damage": damage,
        "damage_lo": damage - half,
        "damage_hi": damage + half,
        "n_rows": n_rows,
    }


def test_the_layer_sweep_names_its_thin_domains_and_an_undecided_third_place(tmp_path):
    pooled = [
        _damage("pooled", c, d, h, n_rows=84)
        for c, d, h in (
            ("mlp:0", 5.0, 0.4),
            ("mlp:29", 1.0, 0.15),
            ("attn:1", 0.41, 0.13),
            ("mlp:10", 0.36, 0.1),
            ("attn:5", 0.1, 0.05),
        )
    ]
    own = [_damage(d, "mlp:0", 5.0, float("nan"), n_rows=n) for d, n in (("code", 2), ("legal", 2), ("calendar", 26))]
    (line,) = ablation_findings(_tables(tmp_path, bridge__layer_damage=pd.DataFrame(pooled + own)))
    assert line.startswith(
        "Mean-ablating one block at a time (pooled domains: 84 texts, equal tokens per domain, of which code, legal "
        "2 texts each): the most damaging are L0 MLP +5.00 [4.60, 5.40]; L29 MLP +1.00 [0.85, 1.15]; "
        "L1 attention +0.41 [0.28, 0.54] nats"
    )
    assert line.endswith("(the third's interval overlaps the fourth's, L10 MLP +0.36 [0.26, 0.46]).")
    one = [_damage(d, "mlp:0", 5.0, float("nan"), n_rows=1) for d in ("code", "legal")]
    (line,) = ablation_findings(_tables(tmp_path, bridge__layer_damage=pd.DataFrame(pooled + one)))
    assert "of which code, legal 1 text each)" in line


def test_both_spectral_edits_of_a_matrix_are_stated_with_the_control_against_the_domains(tmp_path):
    """Keeping the tail hurts every domain but random tokens as much (not domain-specific);
    removing it hurts one domain of two, so no verdict on specificity is made."""
    name = "spectral:model.layers.15.self_attn.o_proj.weight"
    rows = [
        _damage("a", "mlp:15", 0.10, 0.02),
        _damage("b", "mlp:15", 0.20, 0.02),
        _damage(RANDOM_TOKENS, "mlp:15", 0.01, 0.005),
        _damage("a", f"{name}:tail", 0.05, 0.01, "tail"),
        _damage("b", f"{name}:tail", 0.15, 0.01, "tail"),
        _damage(RANDOM_TOKENS, f"{name}:tail", 0.11, 0.02, "tail"),
        _damage("a", f"{name}:bulk", -0.03, 0.01, "bulk"),
        _damage("b", f"{name}:bulk", 0.02, 0.01, "bulk"),
        _damage(RANDOM_TOKENS, f"{name}:bulk", 0.0, 0.01, "bulk"),
    ]
    block, pair = ablation_findings(_tables(tmp_path, bridge__ablation_domains=pd.DataFrame(rows)))
    assert block == (
        "L15 MLP: +0.10 to +0.20 nats across domains, every interval above 0; random tokens 0.01 [0.01, 0.01], "
        "below every domain."
    )
    assert pair == (
        "L15 self_attn.o_proj, keeping only its power-law tail: +0.05 to +0.15 nats across domains, every interval "
        "above 0; random tokens 0.11 [0.09, 0.13], within the domains' range: not specific to the domains. "
        "Removing the tail instead: -0.03 to +0.02 nats across domains, 1 of 2 intervals above 0, 1 below; "
        "random tokens 0.00 [-0.01, 0.01]."
    )


def test_a_robust_spectrum_held_by_one_direction_is_flagged(tmp_path):
    rows = [_rank_row("a", 0, 10.0, share=0.3), _rank_row("b", 0, 90.0, share=0.05)]
    rows += [_rank_row("a", 1, 4.0, 3.0, 5.0, share=0.74), _rank_row("b", 1, 100.0, 92.0, 108.0, share=0.05)]
    acts = pd.DataFrame(rows + [{**r, "variant": "raw"} for r in rows])
    mean_line, layer_line = activation_findings(_tables(tmp_path, activations__activations=acts))
    assert mean_line.endswith(
        "One direction holds over 50% of the robust variance for a in 1 of 2 layers: there the rank describes that "
        "direction (a few outlier tokens can make one), not the domain's spread."
    )
    assert (
        "lowest for a 4 [3, 5] (one direction holds 74% of its robust variance, which a few outlier tokens"
        in layer_line
    )
    assert "highest for b 100 [92, 108];" in layer_line


def test_structure_spikes_are_counted_against_what_noise_gives(tmp_path):
    """Spike counts 0, 1, 2, 5, 9: four matrices have some, two have 3 or more, median 2."""
    rows = [
        {
            "name": f"m{i}",
            "role": "q",
            "status": "success",
            "alpha": 3.0,
            "erg_delta": 0.0,
            "alpha_weighted": 1.0,
            "num_structure_spikes": n,
            "num_traps": int(n == 9),
        }
        for i, n in enumerate([0, 1, 2, 5, 9])
    ]
    line = weights_findings(_tables(tmp_path, weights__weights=pd.DataFrame(rows)), "toy")[-1]
    assert line == (
        "Against each matrix's own shuffle (the randomized-weights control): 4 matrices have eigenvalues beyond "
        "everything their shuffle produces (correlation structure; median 2 per matrix, 2 with 3 or more, where an "
        "unstructured heavy-tailed matrix gives about 1), 1 has correlation traps (large entries that spike even "
        "when shuffled)."
    )


def test_a_budget_below_the_statistics_minimums_is_called_a_smoke_run(tmp_path):
    acts = pd.DataFrame({"d": [64, 64], "n_over_d": [4.0, 4.0]})
    t = _tables(tmp_path, activations__activations=acts)
    short = StudyBudget().with_overrides(activation_tokens=256, head_sequences=8)
    (line,) = budget_findings(t, short)
    assert line.startswith("This is a smoke run, not a result")
    assert "activation_tokens 256 (512), head_sequences 8 (32) wanted" in line  # 8 x d = 8 x 64
    assert budget_findings(t, StudyBudget()) == []  # 4,608 >= 512 and every other minimum met
    assert budget_findings(t, None) == []


def test_robust_cka_comes_first_and_says_which_channels_it_leaves_out(tmp_path):
    rows = []
    for variant, values, excluded in (("raw", [0.99, 0.07], 0), ("robust", [0.98, 0.5], 12)):
        for (a, b), value in zip([(0, 1), (1, 2)], values, strict=True):
            rows.append({"layer_a": a, "layer_b": b, "cka": value, "variant": variant, "n_tokens": 4098})
            rows[-1]["n_excluded"] = excluded
    (line,) = cka_findings(_tables(tmp_path, activations__cka=pd.DataFrame(rows)))
    assert line.index("robust 0.74") < line.index("raw 0.53")  # medians of the two adjacent pairs
    assert "lowest 0.50, layers 1 to 2, the 12 channels massive at any layer left out of every layer)" in line
    assert "lowest 0.07, layers 1 to 2)" in line


def _energy(domain: str, mean: float) -> dict:
    return {
        "layer": 0,
        "domain": domain,
        "energy_mean": mean,
        "energy_mean_lo": mean - 0.02,
        "energy_mean_hi": mean + 0.02,
    }


def test_a_random_token_control_above_every_domain_is_said_to_read_distance_not_knowledge(tmp_path):
    rows = [_energy("a", 0.3), _energy("b", 0.9), _energy(RANDOM_TOKENS, 1.2)]
    (line,) = energy_findings(_tables(tmp_path, activations__energy=pd.DataFrame(rows)))
    assert "highest for b 0.90 [0.88, 0.92]" in line and "lowest for a 0.30 [0.28, 0.32]" in line
    assert line.endswith(
        "random tokens (control) 1.20 [1.18, 1.22], above every domain: the energy reads distance from the "
        "reference texts, not domain knowledge."
    )
    rows[-1] = _energy(RANDOM_TOKENS, 0.5)  # inside the domains' range: nothing added
    (line,) = energy_findings(_tables(tmp_path / "inside", activations__energy=pd.DataFrame(rows)))
    assert line.endswith("random tokens (control) 0.50 [0.48, 0.52].")


def test_head_correlations_say_their_damages_come_from_the_sweeps_screen(tmp_path):
    corr = pd.DataFrame(
        {
            "family": ["heads", "layers"],
            "metric": ["ov_alpha", "alpha"],
            "target": ["damage_screen", "mlp_damage"],
            "rho": [0.1, 0.2],
            "p_value": [0.3, 0.2],
            "q_value": [0.3, 0.3],
            "n": [270, 30],
        }
    )
    heads = pd.DataFrame({"layer": [0], "head": [0], "damage_screen": [0.1], "n_screen": [3]})
    heads_line, layers_line = correlation_findings(
        _tables(tmp_path, bridge__correlation=corr, mechanisms__ablation_heads=heads)
    )
    assert heads_line.startswith(
        "Spectra vs causal importance (heads; a head's damage is the loss on repeated random text's second copy, "
        "from the sweep's screen of 3 sequences): none of 1"
    )
    assert layers_line.startswith("Spectra vs causal importance (layers): none of 1")


def test_a_lowest_cka_that_a_few_tokens_make_is_said_so(tmp_path):
    cka = pd.DataFrame(
        {"layer_a": [0, 1, 2], "layer_b": [1, 2, 3], "cka": [0.98, 0.18, 0.97], "variant": "robust", "n_tokens": 4098}
    )
    medians = pd.DataFrame(
        {
            "variant": ["robust"],
            "cka": [0.97],
            "cka_lo": [0.95],
            "cka_hi": [0.99],
            "n_groups": [16],
            "n_pairs": [3],
            "lowest_layer_a": [1],
            "lowest_cka": [0.18],
            "lowest_cka_without_top_tokens": [0.96],
            "n_top_tokens": [41],
        }
    )
    (line,) = cka_findings(_tables(tmp_path, activations__cka=cka, activations__cka_adjacent=medians))
    assert "lowest 0.18, layers 1 to 2; 0.96 without the 41 tokens of largest norm: a few tokens make it)" in line
    medians["lowest_cka_without_top_tokens"] = 0.50  # under half the gap to the median 0.97 closed: no verdict
    (line,) = cka_findings(_tables(tmp_path / "low", activations__cka=cka, activations__cka_adjacent=medians))
    assert "lowest 0.18, layers 1 to 2; 0.50 without the 41 tokens of largest norm)" in line
