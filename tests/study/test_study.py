"""`study` end to end on a tiny random Llama (fast), then resumed."""

import json
import shutil

import pandas as pd
import pytest
import torch
import transformers

from spectrascope.models.zoo import bundled_path
from spectrascope.study import StudyBudget, run_study

TABLES = {
    "weights": ["weights", "weights_heads"],
    "activations": ["activations", "energy"],
    "mechanisms": ["head_scores", "lens", "ablation_heads"],
    "bridge": ["overlap", "overlap_modes", "alignment", "cka", "ablation_domains", "layers", "correlation",
               "energy_tokens", "energy_agreement"],
}


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    tok_dir = bundled_path("minilm-l6")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=tokenizer.vocab_size,
                                   bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def study(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    budget = StudyBudget.small()
    budget = StudyBudget(**{**budget.to_dict(), "corpora": "calendar,arithmetic"})
    report = run_study(str(tiny_model_dir), out, budget=budget)
    return out, report, budget


def test_every_table_is_written(study):
    out, report, _ = study
    for stage, names in TABLES.items():
        assert (out / stage / "done.json").exists()
        for name in names:
            df = pd.read_parquet(out / stage / f"{name}.parquet")
            assert len(df) > 0, (stage, name)
            assert (out / stage / f"{name}.csv").exists()
    assert report.exists() and report.stat().st_size > 100_000
    assert any((out / "figures").glob("*.png"))


def test_report_has_every_section(study):
    html = study[1].read_text()
    for section in ["overview", "weights", "esd", "heads", "energy", "mechanisms", "overlap", "ablation",
                    "alignment", "correlation", "attribution"]:
        assert f"<section id='{section}'>" in html, section


def test_resume_skips_finished_stages(study, tiny_model_dir):
    out, _, budget = study
    before = {s: json.loads((out / s / "done.json").read_text())["finished"] for s in TABLES}
    shutil.rmtree(out / "bridge")  # as if interrupted during the last stage
    run_study(str(tiny_model_dir), out, budget=budget, resume=True)
    after = {s: json.loads((out / s / "done.json").read_text())["finished"] for s in TABLES}
    assert all(before[s] == after[s] for s in ("weights", "activations", "mechanisms"))
    assert (out / "bridge" / "overlap.parquet").exists()
    info = json.loads((out / "study.json").read_text())
    assert info["resumed"] == ["weights", "activations", "mechanisms"]
    assert info["seconds"].keys() == set(TABLES)
    assert all(info["seconds"][s] == json.loads((out / s / "done.json").read_text())["seconds"] for s in TABLES)


def test_budget_refuses_an_unknown_ablation_mode():
    from spectrascope.errors import SpectrascopeError

    with pytest.raises(SpectrascopeError, match="unknown ablation mode 'resample'"):
        StudyBudget(ablation_mode="resample")
    assert StudyBudget(ablation_mode="zero").ablation_mode == "zero"


def test_pooled_batch_right_pads_and_masks():
    from types import SimpleNamespace

    from spectrascope.study.stages import _pooled_batch

    a = SimpleNamespace(input_ids=torch.tensor([[5, 6, 7]]), attention_mask=None)
    b = SimpleNamespace(input_ids=torch.tensor([[8, 9], [3, 0]]), attention_mask=torch.tensor([[1, 1], [1, 0]]))
    pooled = _pooled_batch([a, b])
    assert pooled["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0], [3, 0, 0]]
    assert pooled["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0]]


def test_ablation_tables_record_the_mode(study):
    out, _, budget = study
    assert budget.ablation_mode == "mean"
    for stage, name in [("mechanisms", "ablation_heads"), ("bridge", "ablation_domains")]:
        df = pd.read_parquet(out / stage / f"{name}.parquet")
        activation = df[df["kind"].isin(["head", "attn", "mlp"])]
        assert len(activation) and (activation["mode"] == "mean").all(), name
