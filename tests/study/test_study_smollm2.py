"""`study` on SmolLM2-135M (integration) with the small budget and three domains.

What the assertions rest on was measured first (``StudyBudget.small()``, the six built-in
domains, seed 0): 211 of 211 matrices fit; residual channel 507 is massive or an outlier in
all 30 layers; the robust effective rank is 10 to 96 against 2.3 to 65 raw; the top
induction head is 18.6 (score 0.87) and mean-ablating it raises the induction loss by 1.65
[1.30, 1.95] nats on fresh sequences; the power-law tails of the MLP gate and of k read 1.50x
and 1.37x their random share of the domains' input variance (robust view), v 0.80x; the
most damaging block is layer 0's MLP (+5.1 [4.3, 5.7] nats pooled); the per-domain
comparison runs at the middle layer (15).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from spectrascope.study import StudyBudget, run_study

pytestmark = pytest.mark.integration

DOMAINS = ("code", "legal", "arithmetic")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2-study")
    report = run_study("smollm2-135m", out, budget=StudyBudget.small().with_overrides(corpora=",".join(DOMAINS)))
    return out, report


def _table(out, stage: str, name: str) -> pd.DataFrame:
    df = pd.read_parquet(out / stage / f"{name}.parquet")
    assert len(df) > 0, (stage, name)
    return df


def test_every_stage_finishes_and_every_matrix_fits(study):
    out, report = study
    info = json.loads((out / "study.json").read_text())
    assert set(info["seconds"]) == {"weights", "activations", "mechanisms", "bridge"}  # small: no SAE stage
    assert info["budget"]["activation_tokens"] == StudyBudget.small().activation_tokens
    weights = _table(out, "weights", "weights")
    analyzed = weights[weights["status"] != "skipped"]
    assert len(analyzed) == 211 and (analyzed["status"] == "success").all()
    skipped = weights[weights["status"] == "skipped"]  # norm vectors: accounted for, with a reason
    assert len(skipped) == 61 and skipped["reason"].str.contains("not a matrix").all()
    html = report.read_text()
    for section in [
        "overview",
        "weights",
        "massive",
        "activations",
        "energy",
        "mechanisms",
        "overlap",
        "ablation",
        "alignment",
        "correlation",
        "attribution",
    ]:
        assert f"<section id='{section}'>" in html, section
    overview = html.split("<section id='overview'>")[1].split("</section>")[0]
    assert "This is a smoke run, not a result" in overview  # the small budget says what it is
    assert "activation_tokens 256 (4,608)" in overview  # 8 x d = 8 x 576


def test_massive_channels_are_found_and_the_robust_view_is_less_dominated(study):
    out, _ = study
    massive = _table(out, "activations", "massive_activations")
    resid = massive[(massive["site"] == "resid_post") & massive["excluded"]]
    assert (resid["channel"] == 507).sum() >= 20
    acts = _table(out, "activations", "activations")
    acts = acts[acts["domain"].isin(DOMAINS)]
    by_variant = acts.groupby("variant")["effective_rank"].median()
    assert by_variant["robust"] > 2 * by_variant["raw"]  # measured 69.6 vs 28.2 (small budget)


def test_the_activation_controls_are_measured_at_the_domains_n(study):
    """A covariance spectrum's noise depends on n / d: the random-token and randomized-weights
    spectra are taken from as many tokens as a domain's (the default budget's were 2,048 against 4,608)."""
    out, _ = study
    acts = _table(out, "activations", "activations")
    n = acts.groupby("domain")["n_tokens"].max()
    wanted = StudyBudget.small().activation_tokens
    assert (n[list(DOMAINS)] == wanted).all() and n["control:random-tokens"] == wanted
    assert 0.9 * wanted <= n["control:randomized-weights"] <= wanted  # calibration texts: a few short of it


def test_induction_head_is_found_and_its_ablation_hurts(study):
    out, _ = study
    scores = _table(out, "mechanisms", "head_scores").sort_values("induction", ascending=False)
    top = scores.iloc[0]
    assert (int(top["layer"]), int(top["head"])) == (18, 6) and top["induction"] > 0.6
    heads = _table(out, "mechanisms", "ablation_heads").set_index(["layer", "head"])
    assert len(heads) == 270 and (heads["first_copy_loss"] > heads["baseline"] + 5).all()
    assert heads.loc[(18, 6), "confirmed"] and heads.loc[(18, 6), "damage_lo"] > 0
    # the control: every confirmed head also ablated on the first copy, with its interval
    confirmed = heads[heads["confirmed"]]
    assert (
        confirmed["damage_first_copy"].notna().all()
        and heads.loc[~heads["confirmed"], "damage_first_copy"].isna().all()
    )
    assert (confirmed["damage_first_copy_lo"] <= confirmed["damage_first_copy"]).all()
    assert (confirmed["damage_first_copy"] <= confirmed["damage_first_copy_hi"]).all()


def test_domains_live_in_the_tails_of_the_mlp_gate_and_k(study):
    out, _ = study
    overlap = _table(out, "activations", "overlap")
    robust = overlap[(overlap["variant"] == "robust") & overlap["domain"].isin(DOMAINS) & (overlap["k"] > 0)]
    assert robust["share"].between(0, 1 + 1e-9).all()
    median = robust.groupby(["role", "part"])["enrichment"].median()
    for role in ("mlp_gate", "k"):
        assert median[(role, "tail")] > 1.1 and median[(role, "tail")] > median[(role, "bulk")], role


def test_layer_zero_mlp_matters_most_and_the_middle_layer_is_compared_per_domain(study):
    out, _ = study
    layers = _table(out, "bridge", "layer_damage")
    pooled = layers[layers["domain"] == "pooled"].sort_values("damage", ascending=False)
    assert pooled.iloc[0]["component"] == "mlp:0" and pooled.iloc[0]["damage_lo"] > 1
    per_domain = layers[layers["domain"] != "pooled"]
    thin = per_domain["n_rows"] < 8  # a bootstrap over fewer texts is no interval
    assert per_domain.loc[thin, "damage_lo"].isna().all() and per_domain.loc[~thin, "damage_lo"].notna().all()
    abl = _table(out, "bridge", "ablation_domains")
    assert set(abl["layer"].dropna().astype(int)) == {15}
    assert set(abl["domain"]) == {*DOMAINS, "control:random-tokens"}
    assert set(abl["edit"]) == {"block", "tail", "bulk"}
    assert (abl["damage_lo"] <= abl["damage"]).all() and (abl["damage"] <= abl["damage_hi"]).all()


def test_statistics_carry_their_q_values_and_nulls(study):
    out, _ = study
    corr = _table(out, "bridge", "correlation")
    assert set(corr["family"]) == {"layers", "heads"}
    assert (corr["q_value"] >= corr["p_value"] - 1e-12).all() and (corr["q_value"] <= 1).all()
    null = _table(out, "activations", "cka_null")
    assert null["cka"].abs().max() < 0.2  # permuted tokens share nothing (at 126 tokens: wide)
