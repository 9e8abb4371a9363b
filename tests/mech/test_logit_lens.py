"""Logit lens on tiny random models: the last layer is the model's own next-token distribution,
every layer equals the final norm + unembedding written out by hand, the table's layout and
ranks, unsupported models and bad input as clear errors, and the ``lens`` / ``patch`` CLI verbs.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
)

from spectrascope.errors import SpectrascopeError
from spectrascope.mech.logit_lens import (
    EMBED_LAYER,
    LENS_COLUMNS,
    first_token_id,
    lens_logits,
    logit_lens,
)
from spectrascope.mech.unembed import unembed, unembed_parts
from spectrascope.models.zoo import bundled_path
from spectrascope.trace import run_with_cache

VOCAB = 60
IDS = [4, 8, 15, 16, 23, 42]


class Wrapped:
    """A LoadedModel stand-in: anything with ``.hf`` and ``.tokenizer``."""

    def __init__(self, hf, tokenizer=None):
        self.hf, self.tokenizer = hf, tokenizer


def tiny(family: str = "llama", vocab: int = VOCAB, seed: int = 0):
    torch.manual_seed(seed)
    if family == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_layer=2, n_head=4, n_embd=32, n_inner=64, n_positions=64)
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=vocab,
            max_position_embeddings=64,
        )
        model = LlamaForCausalLM(config)
    return model.eval()


@pytest.fixture(scope="module")
def bert_tokenizer():
    return AutoTokenizer.from_pretrained(str(bundled_path("minilm-l6")), local_files_only=True)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_last_layer_is_the_models_own_distribution(family):
    model = tiny(family)
    df = logit_lens(Wrapped(model), IDS, targets=[1, 2], k=4)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([IDS])).logits[0].float(), dim=-1)
    last = df[df["layer"] == df["layer"].max()]
    expected = [float(probs[p, t]) for p, t in zip(last["position"], last["token_id"])]
    assert last["prob"].tolist() == pytest.approx(expected, abs=1e-7)
    top1 = last[(last["kind"] == "top") & (last["rank"] == 0)]
    assert top1["token_id"].tolist() == probs.argmax(-1).tolist()
    _, lens, logits = lens_logits(model, torch.tensor([IDS]))
    assert torch.equal(lens[-1], logits[0])  # the same modules on the same tensor: bit-identical


def test_every_layer_is_the_final_rmsnorm_and_unembedding_by_hand():
    model = tiny("llama")
    ids = torch.tensor([IDS])
    points, lens, _ = lens_logits(model, ids)
    assert [layer for layer, _ in points] == [EMBED_LAYER, 0, 1, 2]
    assert [site for _, site in points] == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
        "blocks.2.hook_resid_post",
    ]
    _, cache = run_with_cache(model, ids, "blocks.1.hook_resid_post")
    x = cache["blocks.1.hook_resid_post"][0].double()
    norm = model.model.norm
    by_hand = (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)) * norm.weight.double()
    assert torch.allclose(lens[2].double(), by_hand @ model.lm_head.weight.double().T, atol=1e-5)
    embedded = model.model.embed_tokens(ids)[0]
    assert torch.allclose(lens[0], unembed(model, embedded), atol=1e-6)


def test_table_layout_ranks_and_targets():
    model = tiny("llama")
    k, targets = 3, [7, 9]
    df = logit_lens(Wrapped(model), IDS, targets=targets, k=k)
    assert list(df.columns) == LENS_COLUMNS
    n_points, n_pos = 4, len(IDS)
    assert len(df) == n_points * n_pos * (k + len(targets))
    assert sorted(df["layer"].unique()) == [-1, 0, 1, 2]
    assert df.groupby(["layer", "position"]).size().eq(k + len(targets)).all()
    top = df[df["kind"] == "top"]
    assert top.groupby(["layer", "position"])["rank"].apply(list).map(lambda r: r == [0, 1, 2]).all()
    assert top.groupby(["layer", "position"])["prob"].apply(lambda p: p.is_monotonic_decreasing).all()
    assert df["input_token"].tolist()[: k + 2] == [f"<{IDS[0]}>"] * (k + 2)  # no tokenizer: ids shown as <id>
    # target ranks by hand at layer 1
    _, lens, _ = lens_logits(model, torch.tensor([IDS]))
    hit = df[(df["kind"] == "target") & (df["layer"] == 1)]
    for row in hit.itertuples():
        logits = lens[2, row.position]
        assert row.rank == int((logits > logits[row.token_id]).sum())
        assert row.prob == pytest.approx(float(torch.softmax(logits, -1)[row.token_id]), rel=1e-5)
        top_row = top[(top["layer"] == 1) & (top["position"] == row.position) & (top["token_id"] == row.token_id)]
        if len(top_row):  # a target among the top-k has the same rank and probability there
            assert int(top_row["rank"].iloc[0]) == row.rank and float(top_row["prob"].iloc[0]) == pytest.approx(
                row.prob
            )


def test_string_prompt_and_targets_use_the_tokenizer(bert_tokenizer):
    model = tiny("llama", vocab=bert_tokenizer.vocab_size)
    df = logit_lens(Wrapped(model, bert_tokenizer), "the capital of france is", targets=["paris", "romeward"], k=2)
    paris = bert_tokenizer("paris", add_special_tokens=False)["input_ids"]
    rome = bert_tokenizer("romeward", add_special_tokens=False)["input_ids"]
    assert len(rome) > 1  # several tokens: the first is used
    targets = df[df["kind"] == "target"]
    assert set(targets["token_id"]) == {paris[0], rome[0]}
    assert set(targets["token"]) == {bert_tokenizer.decode([paris[0]]), bert_tokenizer.decode([rome[0]])}
    positions = df.drop_duplicates("position")
    assert positions["input_token"].tolist() == ["[CLS]", "the", "capital", "of", "france", "is", "[SEP]"]
    assert first_token_id(bert_tokenizer, 17) == 17


def test_unembed_parts_per_architecture():
    llama, gpt2 = tiny("llama"), tiny("gpt2")
    assert unembed_parts(llama).norm is llama.model.norm and unembed_parts(llama).lm_head is llama.lm_head
    assert unembed_parts(Wrapped(gpt2)).norm is gpt2.transformer.ln_f


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: BertModel(
                BertConfig(
                    vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64
                )
            ),
            "causal-LM model",
        ),
        (
            lambda: LlamaModel(
                LlamaConfig(
                    hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, vocab_size=VOCAB
                )
            ),
            "causal-LM model",
        ),
        (lambda: torch.nn.Linear(2, 2), "not available.*not a Hugging Face transformer"),
    ],
)
def test_unsupported_models_raise(build, message):
    with pytest.raises(SpectrascopeError, match=message):
        unembed_parts(build())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: logit_lens(m, ""), "no tokenizer"),
        (lambda m: logit_lens(m, []), "encodes to no tokens"),
        (lambda m: logit_lens(m, [[1, 2], [3, 4]]), "one sequence"),
        (lambda m: logit_lens(m, IDS, k=-1), "k must be"),
        (lambda m: logit_lens(m, IDS, targets=[VOCAB]), "outside the vocabulary"),
        (lambda m: logit_lens(m, IDS, targets=["Paris"]), "no tokenizer"),
        (lambda m: logit_lens(m, [1, VOCAB + 5]), "token ids must lie"),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(SpectrascopeError, match=message):
        call(Wrapped(tiny("llama")))


# ----------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, bert_tokenizer):
    """A tiny Llama saved as a HF directory (config.json + safetensors) with the MiniLM tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-llama-lens")
    model = tiny("llama", vocab=bert_tokenizer.vocab_size)
    model.save_pretrained(folder, safe_serialization=True)
    bert_tokenizer.save_pretrained(folder)
    return folder


def test_cli_lens_prints_the_last_position_and_writes_tables_and_heatmaps(model_dir, tmp_path, run_cli):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        "lens", str(model_dir), "the capital of france is", "--target", "paris", "--out", str(out)
    )
    assert code == 0, stderr
    assert "p('paris')" in stdout and "emb" in stdout
    for name in ["lens.parquet", "lens.csv", "lens_heatmap.html", "lens_heatmap.png"]:
        assert (out / name).stat().st_size > 0, name
    df = pd.read_parquet(out / "lens.parquet")
    assert list(df.columns) == LENS_COLUMNS and df["layer"].nunique() == 4
    assert (out / "lens_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_patch_writes_the_sweep(model_dir, tmp_path, run_cli):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        "patch",
        str(model_dir),
        "--clean",
        "the capital of france is",
        "--corrupted",
        "the capital of italy is",
        "--correct",
        "paris",
        "--wrong",
        "rome",
        "--sweep",
        "resid_pre",
        "--out",
        str(out),
    )
    assert code == 0, stderr
    assert "Spearman" in stdout
    df = pd.read_parquet(out / "patching.parquet")
    assert {"layer", "position", "effect_exact", "effect_attribution"} <= set(df.columns)
    assert (out / "patching_heatmap.png").exists() and (out / "patching_heatmap.html").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["lens", "a", "b", "c"], "expected [MODEL] PROMPT"),
        (
            [
                "patch",
                "{model}",
                "--clean",
                "the capital of france is",
                "--corrupted",
                "the capital of the united states is",
                "--correct",
                "paris",
                "--wrong",
                "rome",
            ],
            "same token length",
        ),
        (
            [
                "patch",
                "{model}",
                "--clean",
                "a b",
                "--corrupted",
                "a c",
                "--correct",
                "x",
                "--wrong",
                "y",
                "--sweep",
                "up",
            ],
            "'up' is not one of",
        ),
    ],
)
def test_cli_bad_input_is_one_error_line(model_dir, tmp_path, run_cli, args, message):
    args = [a.replace("{model}", str(model_dir)) for a in args] + ["--out", str(tmp_path)]
    code, _, stderr = run_cli(*args)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], stderr
