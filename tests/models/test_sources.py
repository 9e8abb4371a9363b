"""Requirement 1: every source kind lists names/shapes and loads float32 tensors equal to the
original; requirement 3: tied weights are listed (and so analyzed) once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_builders import plain_state, tiny_llama, write_hf_dir, write_sharded
from safetensors.torch import save_file

from spectrascope.errors import SourceError
from spectrascope.models.open_source import open_source
from spectrascope.models.tensor_source import TensorInfo


def _assert_source_matches(source, tensors: dict[str, torch.Tensor]) -> None:
    infos = source.tensors()
    assert all(isinstance(i, TensorInfo) for i in infos)
    assert {i.name: i.shape for i in infos} == {k: tuple(v.shape) for k, v in tensors.items()}
    for name, original in tensors.items():
        loaded = source.load(name)
        assert isinstance(loaded, np.ndarray)
        assert loaded.dtype == np.float32
        assert loaded.shape == tuple(original.shape)
        np.testing.assert_array_equal(loaded, original.detach().to(torch.float32).numpy())


def test_hf_directory_single_file(llama_safetensors_dir):
    folder, model = llama_safetensors_dir
    assert (folder / "model.safetensors").exists()
    source = open_source(folder)
    _assert_source_matches(source, plain_state(model))
    assert source.config()["model_type"] == "llama"
    assert source.config()["num_key_value_heads"] == 2
    # file order is kept and the spec reopens the same files
    assert source.spec().kind == "safetensors"


def test_hf_directory_path_given_as_str(llama_safetensors_dir):
    folder, model = llama_safetensors_dir
    _assert_source_matches(open_source(str(folder)), plain_state(model))


def test_sharded_checkpoint_with_index(tmp_path):
    model = tiny_llama()
    tensors = plain_state(model)
    folder = write_sharded(tmp_path / "sharded", tensors, model.config.to_dict())
    source = open_source(folder)
    assert len(source.spec().paths) == 2
    _assert_source_matches(source, tensors)


def test_sharded_index_naming_missing_shard_is_a_source_error(tmp_path):
    model = tiny_llama()
    folder = write_sharded(tmp_path / "sharded", plain_state(model), model.config.to_dict())
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(SourceError, match="do not exist"):
        open_source(folder)


def test_single_safetensors_file(tmp_path):
    model = tiny_llama()
    tensors = plain_state(model)
    path = tmp_path / "weights.safetensors"
    save_file(tensors, str(path))
    source = open_source(path)
    assert source.config() == {}
    _assert_source_matches(source, tensors)


def test_safetensors_file_without_suffix_is_sniffed(tmp_path):
    tensors = {"a.weight": torch.randn(16, 12, generator=torch.Generator().manual_seed(0))}
    path = tmp_path / "weights.data"
    save_file(tensors, str(path))
    _assert_source_matches(open_source(path), tensors)


def test_bf16_safetensors_load_as_float32(tmp_path):
    g = torch.Generator().manual_seed(1)
    tensors = {
        "a.weight": torch.randn(32, 16, generator=g).to(torch.bfloat16),
        "b.weight": torch.randn(16, 24, generator=g).to(torch.bfloat16),
    }
    path = tmp_path / "bf16.safetensors"
    save_file(tensors, str(path))
    source = open_source(path)
    assert {i.name: i.dtype for i in source.tensors()} == {"a.weight": "BF16", "b.weight": "BF16"}
    _assert_source_matches(source, tensors)  # compared with the bf16 values widened to float32


def test_in_memory_module():
    model = tiny_llama()
    source = open_source(model)
    assert source.spec() is None
    assert source.config()["model_type"] == "llama"
    _assert_source_matches(source, dict(model.named_parameters()))


def test_in_memory_state_dict():
    model = tiny_llama()
    state = model.state_dict()
    source = open_source(state)
    _assert_source_matches(source, {k: v for k, v in state.items()})


def test_gguf_file_is_a_source(llama_gguf):
    path, state, _ = llama_gguf
    source = open_source(path)
    assert source.spec().kind == "gguf"
    _assert_source_matches(source, {k: torch.from_numpy(v) for k, v in state.items()})


def test_directory_with_one_gguf_file(llama_gguf, tmp_path):
    path, state, _ = llama_gguf
    folder = tmp_path / "ggufdir"
    folder.mkdir()
    (folder / path.name).write_bytes(path.read_bytes())
    assert {i.name for i in open_source(folder).tensors()} == set(state)


def test_missing_path_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "nope.safetensors")


def test_unknown_tensor_name_is_a_source_error(llama_safetensors_dir, llama_gguf):
    with pytest.raises(SourceError):
        open_source(llama_safetensors_dir[0]).load("does.not.exist")
    with pytest.raises(SourceError):
        open_source(llama_gguf[0]).load("does.not.exist")


# ----------------------------------------------------------------------------- tied weights


def test_tied_module_lists_embedding_only():
    model = tiny_llama(tied=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    names = [i.name for i in open_source(model).tensors()]
    assert "model.embed_tokens.weight" in names
    assert "lm_head.weight" not in names


def test_tied_state_dict_lists_embedding_only():
    model = tiny_llama(tied=True)
    state = model.state_dict()
    assert "lm_head.weight" in state  # HF keeps both keys, sharing storage
    names = [i.name for i in open_source(state).tensors()]
    assert names.count("model.embed_tokens.weight") == 1
    assert "lm_head.weight" not in names


def test_tied_safetensors_with_both_tensors_lists_embedding_only(tmp_path):
    model = tiny_llama(tied=True)
    tensors = plain_state(model)  # independent copies: both keys present in the file
    assert {"lm_head.weight", "model.embed_tokens.weight"} <= tensors.keys()
    config = model.config.to_dict()
    assert config["tie_word_embeddings"] is True
    folder = write_hf_dir(tmp_path / "tied", tensors, config)
    names = [i.name for i in open_source(folder).tensors()]
    assert "model.embed_tokens.weight" in names
    assert "lm_head.weight" not in names

    from spectrascope.weights.api import analyze_weights

    df = analyze_weights(folder)
    assert "lm_head.weight" not in set(df["name"])
    assert (df["name"] == "model.embed_tokens.weight").sum() == 1
    assert (df["role"] == "embed").sum() == 1 and (df["role"] == "unembed").sum() == 0


def test_untied_safetensors_keeps_unembedding(llama_safetensors_dir):
    folder, _ = llama_safetensors_dir
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"] is False
    names = [i.name for i in open_source(folder).tensors()]
    assert "lm_head.weight" in names and "model.embed_tokens.weight" in names


def test_state_dict_views_of_one_buffer_are_not_mistaken_for_tied_weights():
    # q, k, v as views into one fused buffer (what torch.load returns for a checkpoint saved
    # from split views): same storage, same shape and stride, different offsets -- not tied.
    fused = torch.randn(96, 32, generator=torch.Generator().manual_seed(0))
    state = {"q.weight": fused[:32], "k.weight": fused[32:64], "v.weight": fused[64:]}
    source = open_source(state)
    assert [i.name for i in source.tensors()] == ["q.weight", "k.weight", "v.weight"]
    _assert_source_matches(source, state)


def test_pickle_in_hf_directory_uses_its_config(tmp_path):
    model = tiny_llama()
    folder = tmp_path / "hf-bin"
    folder.mkdir()
    torch.save(plain_state(model), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(model.config.to_dict(), default=str))
    with pytest.raises(SourceError, match="allow_pickle=True"):
        open_source(folder)
    source = open_source(folder, allow_pickle=True)
    _assert_source_matches(source, plain_state(model))
    assert source.config().get("model_type") == "llama"  # roles (q/k/v/o, mlp_*) need it


def test_sharded_pickle_checkpoint_is_read_whole_or_refused(tmp_path):
    # HF's sharded .bin layout: pytorch_model-0000N-of-00002.bin + pytorch_model.bin.index.json.
    model = tiny_llama()
    tensors = plain_state(model)
    names = list(tensors)
    shards = {
        "pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
        "pytorch_model-00002-of-00002.bin": names[len(names) // 2 :],
    }
    folder = tmp_path / "sharded-bin"
    folder.mkdir()
    for fname, keys in shards.items():
        torch.save({k: tensors[k] for k in keys}, folder / fname)
    (folder / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}})
    )
    try:
        source = open_source(folder, allow_pickle=True)
    except SourceError:
        return  # refusing with a clear error is acceptable; silently reading one shard is not
    assert {i.name for i in source.tensors()} == set(tensors)
