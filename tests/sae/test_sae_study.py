"""The study stage on a tiny model with tiny budgets: every table written, report sections built."""

from __future__ import annotations

from pathlib import Path

from spectrascope.report.html import render
from spectrascope.sae.study import PRODUCES, SaeBudget, features_sections, run
from spectrascope.study.budget import StudyBudget
from spectrascope.study.context import StudyContext
from spectrascope.tables import write_table


def test_stage_returns_its_tables_and_the_report_reads_them(tiny, tmp_path):
    budget = StudyBudget(
        corpora="calendar,arithmetic",
        seq_len=64,
        features=SaeBudget(
            layer=0,
            expansion=2,
            k=4,
            store_tokens=2000,
            train_tokens=4096,
            batch_size=256,
            eval_tokens=64,
            feature_tokens=128,
            loss_tokens=48,
            top_features=2,
        ),
    )
    ctx = StudyContext("tiny", tmp_path, budget)
    ctx._loaded = tiny
    tiny.arch = type("Arch", (), {"n_layers": 2, "d_model": 32})()
    tables = run(ctx)
    assert set(tables) == set(PRODUCES) and all(len(t) for t in tables.values())
    folder = tmp_path / "features"
    for name, table in tables.items():  # as the study runner writes them
        write_table(table, folder, name)
    assert (folder / "sae" / "cfg.json").exists() and (folder / "activations" / "meta.json").exists()
    sections = features_sections(tmp_path, cards=2)
    assert sections[0].id == "features" and len(sections) == 3
    assert any("explains" in p for p in sections[0].paragraphs)
    quality = tables["sae_quality"]
    few = quality[(quality["domain"] != "all") & (quality["n_texts"] < 8)]
    flagged = [p for p in sections[0].paragraphs if "rough intervals" in p]
    assert len(flagged) == (1 if len(few) else 0)
    assert all(f"{d} ({n})" in flagged[0] for d, n in zip(few["domain"], few["n_texts"], strict=True))
    page = render("t", sections, tmp_path / "report.html")
    assert "Feature" in Path(page).read_text()
    assert SaeBudget.from_study(budget).k == 4


def test_ablation_sentences_state_intervals_and_the_random_feature_control():
    import pandas as pd

    from spectrascope.sae.study import _ablation_sentences

    table = pd.DataFrame(
        [
            {
                "domain": "code",
                "kind": "features",
                "n_removed": 5,
                "damage": 0.05,
                "damage_lo": 0.02,
                "damage_hi": 0.08,
                "excess": 0.04,
                "excess_lo": 0.01,
                "excess_hi": 0.07,
            },
            {
                "domain": "legal",
                "kind": "features",
                "n_removed": 3,
                "damage": 0.0,
                "damage_lo": -0.01,
                "damage_hi": 0.01,
                "excess": -0.002,
                "excess_lo": -0.01,
                "excess_hi": 0.006,
            },
            {"domain": "code", "kind": "random features", "damage": 0.01, "damage_lo": 0.0, "damage_hi": 0.02},
            {"domain": "code", "kind": "head", "damage": 0.3, "damage_lo": 0.2, "damage_hi": 0.4},
            {"domain": "legal", "kind": "head", "damage": 0.1, "damage_lo": -0.1, "damage_hi": 0.3},
        ]
    )
    features_line, head_line = _ablation_sentences(table)
    assert features_line.startswith("Removing each domain's 3-5 most selective features changes its loss")
    assert "code +0.050 [+0.020, +0.080]; legal +0.000 [-0.010, +0.010]" in features_line
    assert "above zero in 1 and below zero in 0 of 2 domains" in features_line
    assert "median damage +0.200" in head_line and "above zero in 1 of 2" in head_line


def test_bridge_rows_are_read_from_the_bridge_table_not_measured_again(tmp_path):
    import pandas as pd

    from spectrascope.sae.study import _bridge_rows

    assert _bridge_rows(tmp_path, {"code": "code"}).empty  # no bridge stage: no rows
    rows = []
    for domain, base in (("legal", 3.0), ("code", 2.0)):
        for i, damage in enumerate((0.1, 0.4, 0.2, 0.3)):
            rows.append(
                {
                    "domain": domain,
                    "component": f"spectral:w{i}:tail",
                    "kind": "spectral",
                    "damage": damage,
                    "damage_lo": damage - 0.05,
                    "damage_hi": damage + 0.05,
                    "baseline": base,
                    "n_rows": 32,
                }
            )
        rows.append({**rows[-1], "component": "mlp:15", "kind": "mlp", "damage": 9.0})  # a block: not an edit
    (tmp_path / "bridge").mkdir()
    pd.DataFrame(rows).to_parquet(tmp_path / "bridge" / "ablation_domains.parquet")
    got = _bridge_rows(tmp_path, {"code": "code-item", "legal": "legal"})
    assert got["domain"].tolist() == ["code-item"] * 3 + ["legal"] * 3  # the corpora's order, items' names
    assert got["intervention"].tolist()[:3] == ["spectral:w1:tail", "spectral:w3:tail", "spectral:w2:tail"]
    assert got["damage"].tolist()[:3] == [0.4, 0.3, 0.2]
    assert (got["loss"] - got["baseline"] - got["damage"]).abs().max() < 1e-12
    assert got["baseline"].tolist() == [2.0] * 3 + [3.0] * 3
    assert set(got["n_texts"]) == {32} and set(got["source"]) == {"bridge"} and got["excess"].isna().all()
    features = pd.DataFrame(
        [
            {
                "domain": d,
                "kind": "features",
                "damage": 0.01,
                "damage_lo": 0.0,
                "damage_hi": 0.02,
                "excess": 0.01,
                "excess_lo": 0.0,
                "excess_hi": 0.02,
                "n_texts": 8,
                "source": "features",
            }
            for d in ("code-item", "legal")
        ]
    )
    from spectrascope.sae.study import _ablation_sentences

    _, bridge_line = _ablation_sentences(pd.concat([features, got], ignore_index=True))
    assert "up to 3 per domain" in bridge_line and "median 32 texts, against 8 here" in bridge_line
    assert "median damage +0.300" in bridge_line and "above zero in 6 of 6" in bridge_line


def test_feature_removals_resume_from_the_activation_stages_clean_pass(tiny, tmp_path):
    """The activation stage keeps the residual at the block after the SAE's site (none when the
    budget trains no SAE, or the site is the last block's); the features stage reads it back for
    a loss over the first of the same texts, only when that stage finished with this study's
    fingerprint."""
    import json

    from spectrascope.activations.batching import text_batches
    from spectrascope.bridge.clean_losses import FILE_NAME, CleanLosses, loss_capture
    from spectrascope.corpora import corpus_texts
    from spectrascope.mech.metrics import corpus_loss
    from spectrascope.sae.study import _stored_clean, removal_layer
    from spectrascope.study.context import MARKER
    from spectrascope.trace.passes import run_pass

    assert removal_layer(StudyBudget.small(), 30) is None
    assert removal_layer(StudyBudget(), 30) == 16
    assert removal_layer(StudyBudget(features=SaeBudget(layer=29)), 30) is None
    tiny.arch = type("Arch", (), {"n_layers": 2, "d_model": 32})()
    texts = corpus_texts("calendar")[0].texts
    capture = loss_capture(tiny, texts, 200, 64, [1])
    run_pass(tiny.hf, text_batches(tiny.tokenizer, texts, 400, 64), [capture])
    ctx = StudyContext("tiny", tmp_path, StudyBudget(), fingerprints={"activations": {"seed": 0}})
    (tmp_path / "activations").mkdir()
    CleanLosses.from_captures({"calendar": capture}).save(tmp_path / "activations" / FILE_NAME)
    metric = corpus_loss(tiny, "calendar", max_tokens=48, seq_len=64)
    assert _stored_clean(ctx, ["calendar"], ["calendar"], 0) is None  # no marker: not this study's
    marker = tmp_path / "activations" / MARKER
    marker.write_text(json.dumps({"fingerprint": {"seed": 1}}))
    assert _stored_clean(ctx, ["calendar"], ["calendar"], 0) is None  # another study's
    marker.write_text(json.dumps({"fingerprint": {"seed": 0}}))
    clean = _stored_clean(ctx, ["calendar"], ["calendar"], 0)
    assert clean is not None
    given = clean("calendar", metric)
    assert given is not None and set(given.resid) == {1} and given.resid[1].shape[0] == metric.n_rows
    assert _stored_clean(ctx, ["calendar"], ["calendar"], 1)("calendar", metric) is None  # block 2 not kept
