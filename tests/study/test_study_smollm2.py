"""`study` on SmolLM2-135M (integration) with small budgets and three domains.

Measured before the assertions were written (``StudyBudget.small()``, corpora code, legal,
arithmetic, seed 0; 155 s on 2 cores): 211 of 211 matrices fit; top induction head 18.6
(score 0.90, next 17.3 at 0.75); mean-ablating 18.6 is 4th of 270 heads by induction-loss
damage; median tail enrichment of the inputs to the MLP gate 1.25 and to k 1.28 (bulk
0.98 and 1.01); layer 0's down_proj rebuilt from its bulk only (tail removed) raises the
loss by 6.4 nats on average, from its tail only by 0.31; ablating layer 0's MLP is the most
damaging block edit in every domain (7.5 nats); CKA of resid_post 0-1 0.63, 28-29 0.71,
0-29 0.39.
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
    budget = StudyBudget(**{**StudyBudget.small().to_dict(), "corpora": ",".join(DOMAINS)})
    report = run_study("smollm2-135m", out, budget=budget)
    return out, report


def _table(out, stage: str, name: str) -> pd.DataFrame:
    df = pd.read_parquet(out / stage / f"{name}.parquet")
    assert len(df) > 0, (stage, name)
    return df


def test_every_stage_finishes_and_every_matrix_fits(study):
    out, report = study
    seconds = json.loads((out / "study.json").read_text())["seconds"]
    assert set(seconds) == {"weights", "activations", "mechanisms", "bridge"}
    weights = _table(out, "weights", "weights")
    assert len(weights) == 211 and (weights["status"] == "success").all()
    acts = _table(out, "activations", "activations")
    assert set(acts["domain"]) == set(DOMAINS) and set(acts["layer"]) == set(range(30))
    html = report.read_text()
    for section in ["overview", "weights", "esd", "heads", "energy", "mechanisms", "overlap", "ablation",
                    "alignment", "correlation", "attribution"]:
        assert f"<section id='{section}'>" in html, section


def test_induction_head_is_found_and_matters(study):
    out, _ = study
    scores = _table(out, "mechanisms", "head_scores").sort_values("induction", ascending=False)
    top = scores.iloc[0]
    assert (int(top["layer"]), int(top["head"])) == (18, 6) and top["induction"] > 0.6
    sweep = _table(out, "mechanisms", "ablation_heads")
    assert (sweep["mode"] == "mean").all() and len(sweep) == 270
    assert (sweep["first_copy_loss"] > sweep["baseline"] + 5).all()  # in-context copying works
    ranked = sweep.sort_values("damage", ascending=False)["component"].tolist()
    assert ranked.index("head:18.6") < 10


def test_domains_live_in_the_tails_of_the_mlp_gate_and_k(study):
    out, _ = study
    overlap = _table(out, "bridge", "overlap")
    assert overlap["share"].between(0, 1 + 1e-9).all()
    median = overlap.groupby(["role", "part"])["enrichment"].median()
    for role in ("mlp_gate", "k"):
        assert median[(role, "tail")] > 1.1 and median[(role, "tail")] > median[(role, "bulk")] + 0.1, role


def test_removing_the_tail_hurts_more_than_removing_the_bulk(study):
    out, _ = study
    abl = _table(out, "bridge", "ablation_domains")
    assert set(abl["domain"]) == set(DOMAINS)
    down = abl[abl["component"].str.startswith("spectral:model.layers.0.mlp.down_proj.weight:")]
    damage = down.assign(edit=down["component"].str.rsplit(":", n=1).str[-1]).pivot_table(
        index="domain", columns="edit", values="damage")
    assert (damage["bulk"] > 3 * damage["tail"]).all(), damage
    blocks = abl[abl["kind"].isin(["attn", "mlp"])]
    worst = blocks.loc[blocks.groupby("domain")["damage"].idxmax()]
    assert (worst["kind"] == "mlp").all() and (worst["layer"] == 0).all(), worst


def test_nearby_layers_are_more_alike_than_distant_ones(study):
    out, _ = study
    cka = _table(out, "bridge", "cka").pivot_table(index="layer_a", columns="layer_b", values="cka")
    assert cka.loc[0, 1] > cka.loc[0, 29] and cka.loc[28, 29] > cka.loc[0, 29]
