"""load_model: bundled models, Llama GGUF files (converted once, cached) and local HF directories
as runnable transformers models with their tokenizers; user errors as one-line SpectrascopeErrors.

The SmolLM2 conversion runs once per test session into a temporary SPECTRASCOPE_CACHE (never
the user's cache): the session fixture sets the variable only while it loads, and the tests
that load SmolLM2 again set it with monkeypatch.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from model_builders import tiny_llama, write_llama_gguf
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from spectrascope.errors import SourceError, SpectrascopeError
from spectrascope.models import gguf_convert, tokenizer_cache
from spectrascope.models.gguf_convert import CACHE_ENV
from spectrascope.models.loaded import LoadedModel, ModelArch, load_model
from spectrascope.models.roles import HeadGeometry
from spectrascope.models.tokenizer_cache import TOKENIZER_MARKER, gguf_tokenizer
from spectrascope.models.zoo import bundled_path

PROMPT = "The capital of France is"
PROMPT_IDS = [504, 3575, 282, 4649, 314]  # transformers' own GGUF tokenizer on PROMPT
SMOL_EOS = 2  # <|im_end|>, also the GGUF's padding token


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def smol_cache(tmp_path_factory) -> Iterator[Path]:
    """A cache root holding SmolLM2 converted (weights + tokenizer) by one load_model call;
    deleted after the session (it holds 540 MB of float32 weights)."""
    root = tmp_path_factory.mktemp("spectrascope-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(root))
        load_model("smollm2-135m")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def smol(smol_cache, monkeypatch) -> LoadedModel:
    monkeypatch.setenv(CACHE_ENV, str(smol_cache))
    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def minilm() -> LoadedModel:
    return load_model("minilm-l6")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


def eos_only_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with an eos token and no pad token, built offline, saved to folder."""
    words = ["</s>", "<unk>", "the", "cat", "sat", "on", "a", "mat", "dog", "ran"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>")
    fast.padding_side = "left"  # load_model must switch it to right padding
    fast.save_pretrained(str(folder))
    return fast


def tiny_llama_dir(folder: Path, vocab: int = 120) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(str(folder))
    return model


# ----------------------------------------------------------------------------- SmolLM2 (GGUF)


@pytest.mark.integration
def test_smollm2_logits_equal_transformers_own_gguf_load(smol, monkeypatch):
    """Validates the dequantization and the q/k rotary unpermutation against transformers."""
    import gguf as gguf_py
    from transformers import AutoModelForCausalLM

    # transformers builds the same (read-only) tensor-name map once per submodule, ~400 times;
    # memoizing it changes nothing in the result and saves about a third of the load time.
    monkeypatch.setattr(gguf_py, "get_tensor_name_map", functools.lru_cache(gguf_py.get_tensor_name_map))
    gguf = bundled_path("smollm2-135m")
    ref = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, local_files_only=True, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    batch = smol.tokenize([PROMPT, "def fibonacci(n):\n    return"], max_length=32)
    with torch.no_grad():
        ours = smol.hf(**batch).logits
        theirs = ref(**batch).logits
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[mask], theirs[mask], atol=1e-4, rtol=0)


@pytest.mark.integration
def test_smollm2_greedy_next_token_is_paris(smol):
    batch = smol.tokenize([PROMPT], max_length=16)
    assert batch["input_ids"][0].tolist() == PROMPT_IDS
    with torch.no_grad():
        logits = smol.hf(**batch).logits[0, -1]
    assert smol.tokenizer.decode(int(logits.argmax())) == " Paris"


@pytest.mark.integration
def test_smollm2_arch_tokenizer_and_right_padding(smol, smol_cache):
    assert isinstance(smol, LoadedModel)
    assert smol.name == "smollm2-135m"
    assert smol.source_path == bundled_path("smollm2-135m").resolve()
    assert smol.hf_dir.parent == smol_cache.resolve()
    assert smol.arch == ModelArch(
        model_type="llama",
        family="llama",
        n_layers=30,
        d_model=576,
        heads=HeadGeometry(n_heads=9, n_kv_heads=3, head_dim=64, d_model=576),
        vocab_size=49152,
        architectures=("LlamaForCausalLM",),
        kind="causal_lm",
    )
    assert smol.arch.head_geometry.group_size == 3
    assert not smol.hf.training
    assert smol.device == torch.device("cpu") and smol.dtype == torch.float32
    assert smol.hf.config._attn_implementation == "eager"
    batch = smol.tokenize(["Hello", PROMPT], max_length=64)
    assert set(batch) >= {"input_ids", "attention_mask"}
    ids, mask = batch["input_ids"], batch["attention_mask"]
    n = int(mask[0].sum())
    assert ids.shape == mask.shape == (2, len(PROMPT_IDS))
    assert mask[0, :n].all() and not mask[0, n:].any()  # right padding
    assert (ids[0, n:] == SMOL_EOS).all() and smol.tokenizer.pad_token_id == SMOL_EOS
    assert smol.tokenize([PROMPT], max_length=3)["input_ids"].shape == (1, 3)  # truncation


@pytest.mark.integration
def test_smollm2_second_load_uses_the_cache(smol_cache, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(smol_cache))
    (folder,) = [p for p in smol_cache.iterdir() if p.is_dir()]
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "source.json", "tokenizer.json", TOKENIZER_MARKER} <= set(stamps)

    def fail(*args, **kwargs):
        raise AssertionError("converted or built again")

    monkeypatch.setattr(gguf_convert.GGUFSource, "__init__", fail)  # what a second conversion would need
    monkeypatch.setattr(tokenizer_cache, "build_gguf_tokenizer", fail)
    again = load_model("smollm2-135m")
    assert again.hf_dir == folder.resolve() and again.tokenizer is not None
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


# ----------------------------------------------------------------------------- MiniLM (BERT)


def mean_pool(loaded: LoadedModel, texts: list[str]) -> torch.Tensor:
    batch = loaded.tokenize(texts, max_length=64)
    with torch.no_grad():
        hidden = loaded.hf(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


@pytest.mark.integration
def test_minilm_loads_and_similar_sentences_embed_closer(minilm):
    assert type(minilm.hf).__name__ == "BertModel" and not minilm.hf.training
    assert (minilm.arch.model_type, minilm.arch.family, minilm.arch.kind) == ("bert", "bert", "base")
    assert (minilm.arch.n_layers, minilm.arch.d_model, minilm.arch.n_heads, minilm.arch.head_dim) == (6, 384, 12, 32)
    assert minilm.arch.vocab_size == 30522
    emb = mean_pool(
        minilm,
        [
            "A man is playing a guitar.",
            "Someone plays an acoustic guitar.",
            "The stock market fell sharply on Monday.",
        ],
    )
    similar, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert similar > unrelated + 0.3, (similar, unrelated)


@pytest.mark.integration
def test_minilm_tokenize_pads_right_with_its_pad_token(minilm):
    batch = minilm.tokenize(["short", "a somewhat longer sentence here"], max_length=32)
    assert {"input_ids", "attention_mask", "token_type_ids"} <= set(batch)
    assert batch["input_ids"][0, -1] == minilm.tokenizer.pad_token_id == 0
    assert batch["attention_mask"][0].tolist() == [1, 1, 1] + [0] * (batch["input_ids"].shape[1] - 3)


# ----------------------------------------------------------------------------- local HF dirs


def test_local_llama_dir_with_eos_only_tokenizer(tmp_path):
    folder = tmp_path / "tiny-llama"
    model = tiny_llama_dir(folder)
    eos_only_tokenizer(folder)
    loaded = load_model(folder)
    assert type(loaded.hf).__name__ == "LlamaForCausalLM" and loaded.arch.kind == "causal_lm"
    assert loaded.name == "tiny-llama" and loaded.source_path == folder.resolve()
    assert loaded.arch.heads == HeadGeometry(4, 2, 16, 64) and loaded.arch.n_layers == 2
    tok = loaded.tokenizer
    assert tok.pad_token == tok.eos_token == "</s>" and tok.padding_side == "right"
    batch = loaded.tokenize(["the cat sat on a mat", "a dog"], max_length=16)
    assert batch["input_ids"].tolist() == [[2, 3, 4, 5, 6, 7], [6, 8, 0, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 0, 0, 0, 0]]
    with torch.no_grad():
        ours = loaded.hf(**batch).logits
        ref = model(**batch).logits
    torch.testing.assert_close(ours, ref)


def test_local_dir_without_tokenizer_loads_and_tokenize_says_why(tmp_path):
    folder = tmp_path / "no-tok"
    tiny_llama_dir(folder)
    loaded = load_model(folder)
    assert loaded.tokenizer is None
    with pytest.raises(SpectrascopeError, match="has no tokenizer"):
        loaded.tokenize(["hello"], max_length=8)


def test_a_safetensors_file_inside_a_hf_dir_loads_that_dir_with_its_tokenizer(tmp_path):
    folder = tmp_path / "m"
    tiny_llama_dir(folder)
    eos_only_tokenizer(folder)
    loaded = load_model(folder / "model.safetensors")
    assert loaded.hf_dir == folder.resolve() and loaded.tokenizer is not None


def test_masked_lm_and_lm_head_architectures_pick_their_auto_class(tmp_path):
    torch.manual_seed(0)
    bert = BertForMaskedLM(
        BertConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=50,
            max_position_embeddings=32,
        )
    )
    bert.save_pretrained(str(tmp_path / "bert"))
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50, n_positions=32))
    gpt2.save_pretrained(str(tmp_path / "gpt2"))
    b, g = load_model(tmp_path / "bert"), load_model(tmp_path / "gpt2")
    assert type(b.hf).__name__ == "BertForMaskedLM" and b.arch.kind == "masked_lm" and b.arch.family == "bert"
    assert type(g.hf).__name__ == "GPT2LMHeadModel" and g.arch.kind == "causal_lm"
    assert (g.arch.family, g.arch.n_layers, g.arch.d_model, g.arch.n_heads) == ("gpt2", 1, 32, 2)


def test_dtype_and_attn_implementation_are_passed_through(tmp_path):
    folder = tmp_path / "m"
    tiny_llama_dir(folder)
    loaded = load_model(folder, dtype="bfloat16", attn_implementation="sdpa")
    assert loaded.dtype == torch.bfloat16
    assert loaded.hf.config._attn_implementation == "sdpa"


# ----------------------------------------------------------------------------- GGUF files


def test_tiny_llama_gguf_file_converts_to_the_original_weights(tmp_path, tmp_cache):
    model = tiny_llama(tied=True)
    path = tmp_path / "tiny.gguf"
    write_llama_gguf(path, model)
    loaded = load_model(path)
    assert loaded.tokenizer is None  # the file has no vocabulary
    assert loaded.name == "tiny" and loaded.source_path == path.resolve()
    assert loaded.hf_dir.parent == tmp_cache.resolve()
    ours = loaded.hf.state_dict()
    for name, W in model.state_dict().items():
        np.testing.assert_array_equal(ours[name].numpy(), W.numpy(), err_msg=name)  # q/k unpermuted
    assert loaded.arch.heads == HeadGeometry(4, 2, 16, 64)
    assert load_model(tmp_path).hf_dir == loaded.hf_dir  # a folder holding one .gguf and no config.json


def test_non_llama_gguf_is_a_clear_source_error(tmp_path, tmp_cache):
    torch.manual_seed(0)
    qwen = Qwen2ForCausalLM(
        Qwen2Config(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=50,
        )
    )
    path = tmp_path / "qwen.gguf"
    write_llama_gguf(path, qwen, arch="qwen2", permute=False)
    with pytest.raises(SourceError, match="Llama-architecture.*qwen2"):
        load_model(path)


def test_half_written_tokenizer_cache_is_rebuilt_and_a_finished_one_reused(tmp_path, monkeypatch):
    folder = tmp_path / "converted"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{half")  # an interrupted save: no marker
    builds = []

    def build(path):
        builds.append(path)
        return PreTrainedTokenizerFast.from_pretrained(str(src), local_files_only=True)

    src = tmp_path / "src-tok"
    eos_only_tokenizer(src)
    monkeypatch.setattr(tokenizer_cache, "build_gguf_tokenizer", build)
    tok = gguf_tokenizer(tmp_path / "x.gguf", folder)
    assert len(builds) == 1 and (folder / TOKENIZER_MARKER).exists()
    assert tok("the cat")["input_ids"] == [2, 3]
    assert not any(p.name.startswith(".tokenizer-") for p in folder.iterdir())  # staging removed
    again = gguf_tokenizer(tmp_path / "x.gguf", folder)
    assert len(builds) == 1 and again("the cat")["input_ids"] == [2, 3]


# ----------------------------------------------------------------------------- user errors


def _pickle_only_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pickled"
    tiny_llama_dir(folder)
    (folder / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(2)}, folder / "pytorch_model.bin")
    return folder


def _unknown_arch_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "unknown"
    tiny_llama_dir(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(model_type="frobnicator", architectures=["FrobnicatorForCausalLM"])
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _no_config_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "noconfig"
    tiny_llama_dir(folder)
    (folder / "config.json").unlink()
    return folder


def _mismatched_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "mismatch"
    tiny_llama_dir(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["num_hidden_layers"] = 4  # weights exist for 2 layers only
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _lone_safetensors(tmp_path: Path) -> Path:
    folder = _no_config_dir(tmp_path)
    return folder / "model.safetensors"


def _empty_dir(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _text_file(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text("not a model")
    return tmp_path / "notes.txt"


def _pickle_file(tmp_path: Path) -> Path:
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    return tmp_path / "model.pt"


def _corrupt_gguf(tmp_path: Path) -> Path:
    (tmp_path / "bad.gguf").write_bytes(b"GGUF\x03\x00")
    return tmp_path / "bad.gguf"


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda p: p / "does-not-exist", "no such file or directory.*not a bundled model name"),
        (lambda p: "smollm3-999b", "no such file or directory"),
        (_pickle_only_dir, "refuses to unpickle.*safetensors"),
        (_pickle_file, "refuses to unpickle"),
        (_unknown_arch_dir, "unknown architecture 'frobnicator'"),
        (_no_config_dir, "no config.json"),
        (_mismatched_dir, "weights do not match the config"),
        (_lone_safetensors, "lone .safetensors file has no config"),
        (_empty_dir, "no model weights found"),
        (_text_file, "unknown model format"),
        (_corrupt_gguf, "corrupt or truncated GGUF"),
    ],
)
def test_user_errors_are_one_line_spectrascope_errors(tmp_path, tmp_cache, make, pattern):
    with pytest.raises(SpectrascopeError, match=pattern) as info:
        load_model(make(tmp_path))
    assert "\n" not in str(info.value)


def test_bad_device_dtype_and_attention_are_clear_errors(tmp_path):
    folder = tmp_path / "m"
    tiny_llama_dir(folder)
    with pytest.raises(SpectrascopeError, match="unknown device"):
        load_model(folder, device="gpu0")
    with pytest.raises(SpectrascopeError, match="unknown dtype"):
        load_model(folder, dtype="float77")
    with pytest.raises(SpectrascopeError, match="cannot load this model") as info:
        load_model(folder, attn_implementation="warp-drive")
    assert "\n" not in str(info.value)
    if not torch.cuda.is_available():
        with pytest.raises(SpectrascopeError, match="CUDA is not available"):
            load_model(folder, device="cuda")


def test_tokenize_rejects_empty_input_and_bad_max_length(tmp_path):
    folder = tmp_path / "m"
    tiny_llama_dir(folder)
    eos_only_tokenizer(folder)
    loaded = load_model(folder)
    with pytest.raises(SpectrascopeError, match="empty"):
        loaded.tokenize([], max_length=8)
    with pytest.raises(SpectrascopeError, match="max_length"):
        loaded.tokenize(["the cat"], max_length=0)
    assert loaded.tokenize("the cat", max_length=8)["input_ids"].tolist() == [[2, 3]]


def test_one_device_check_for_the_api_and_the_cli(monkeypatch):
    """Device "auto" is cuda when present, else cpu; the CLI's --device goes through the same check."""
    from spectrascope.cli.options import require_device
    from spectrascope.errors import OptionError
    from spectrascope.models.loaded import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and require_device("auto") == "cpu"
    with pytest.raises(OptionError, match="CUDA is not available here"):
        require_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda") and require_device("auto") == "cuda"
