"""SAELens folders both ways, checked against sae-lens itself (a test-only dependency):
a spectrascope SAE loads in sae-lens and encodes identically; SAEs that sae-lens writes
(standard, topk with decoder-norm rescaling, jumprelu, batchtopk) load here and encode
identically. Corrupt and mismatched folders give one clear error and no half-written folder."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import save_file

from spectrascope.sae.base import SaeError
from spectrascope.sae.registry import ARCHITECTURES, build_sae
from spectrascope.sae.saelens_io import (
    CFG_FILENAME,
    WEIGHTS_FILENAME,
    load_sae,
    save_sae,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import sae_lens


def _randomized(arch: str):
    sae = build_sae(arch, 16, 40, k=5, seed=1)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3)
        sae.b_dec.normal_()
        if hasattr(sae, "threshold"):
            sae.threshold.uniform_(0.0, 0.5)
    sae.metadata.update(model_name="tiny", hook_name="blocks.1.hook_resid_post")
    return sae


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_spectrascope_folder_loads_in_saelens(arch, tmp_path):
    sae = _randomized(arch)
    folder = save_sae(sae, tmp_path / arch)
    theirs = sae_lens.SAE.load_from_disk(folder)
    x = torch.randn(64, 16)
    codes = sae.encode(x)
    assert (codes > 0).any() and (codes == 0).any()
    assert torch.equal(theirs.encode(x), codes)
    assert torch.allclose(theirs.decode(codes), sae.decode(codes), atol=1e-6)
    back = load_sae(folder)
    assert type(back) is type(sae) and torch.equal(back.encode(x), codes)
    assert back.metadata["hook_name"] == "blocks.1.hook_resid_post"


def _saelens_written(kind: str, folder):
    torch.manual_seed(3)
    if kind == "standard":
        sae = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=16, d_sae=40))
    elif kind == "jumprelu":
        sae = sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(d_in=16, d_sae=40))
    elif kind == "topk":
        cfg = sae_lens.TopKTrainingSAEConfig(d_in=16, d_sae=40, k=5, rescale_acts_by_decoder_norm=True)
        sae = sae_lens.TopKTrainingSAE(cfg)
    else:
        sae = sae_lens.BatchTopKTrainingSAE(sae_lens.BatchTopKTrainingSAEConfig(d_in=16, d_sae=40, k=5))
        sae.topk_threshold = torch.tensor(0.2, dtype=torch.double)
    with torch.no_grad():
        for param in sae.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
        if hasattr(sae, "threshold"):
            sae.threshold.abs_()
        sae.W_dec.mul_(torch.rand(40, 1) + 0.5)  # decoder rows of unequal norm
    saver = sae.save_inference_model if hasattr(sae, "save_inference_model") else sae.save_model
    saver(folder)
    return sae_lens.SAE.load_from_disk(folder)


@pytest.mark.parametrize("kind", ["standard", "topk", "jumprelu", "batchtopk"])
def test_saelens_folder_loads_here(kind, tmp_path):
    theirs = _saelens_written(kind, tmp_path / kind)
    ours = load_sae(tmp_path / kind)
    x = torch.randn(64, 16)
    expected = theirs.encode(x)
    assert (expected > 0).any()
    got = ours.encode(x)
    assert torch.allclose(got, expected, atol=1e-5) and torch.equal(got > 0, expected > 0)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def _write_folder(folder, cfg: dict, tensors: dict) -> None:
    folder.mkdir()
    (folder / CFG_FILENAME).write_text(json.dumps(cfg))
    save_file(tensors, str(folder / WEIGHTS_FILENAME))


def _good(d_in=4, d_sae=6):
    cfg = {"d_in": d_in, "d_sae": d_sae, "architecture": "standard", "metadata": {"sae_lens_version": "6.0.0"}}
    tensors = {
        "W_enc": torch.zeros(d_in, d_sae),
        "W_dec": torch.zeros(d_sae, d_in),
        "b_enc": torch.zeros(d_sae),
        "b_dec": torch.zeros(d_in),
    }
    return cfg, tensors


def test_bad_folders_give_one_clear_error(tmp_path):
    with pytest.raises(SaeError, match="no such SAE folder"):
        load_sae(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SaeError, match="no cfg.json"):
        load_sae(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CFG_FILENAME).write_text("{not json")
    with pytest.raises(SaeError, match="unreadable SAE config"):
        load_sae(broken)
    cfg, tensors = _good()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / CFG_FILENAME).write_text(json.dumps(cfg))
    (corrupt / WEIGHTS_FILENAME).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage")
    with pytest.raises(SaeError, match="corrupt weights file"):
        load_sae(corrupt)
    cfg, tensors = _good()
    tensors["W_dec"] = torch.zeros(6, 5)
    _write_folder(tmp_path / "mismatch", cfg, tensors)
    with pytest.raises(SaeError, match="W_dec has shape"):
        load_sae(tmp_path / "mismatch")
    cfg, tensors = _good()
    cfg["architecture"] = "gated"
    _write_folder(tmp_path / "gated", cfg, tensors)
    with pytest.raises(SaeError, match="'gated' is not supported"):
        load_sae(tmp_path / "gated")
    cfg, tensors = _good()
    cfg["normalize_activations"] = "layer_norm"
    _write_folder(tmp_path / "norm", cfg, tensors)
    with pytest.raises(SaeError, match="layer_norm"):
        load_sae(tmp_path / "norm")


def test_save_replaces_an_sae_folder_and_refuses_anything_else(tmp_path):
    sae = _randomized("topk")
    save_sae(sae, tmp_path / "out")
    save_sae(_randomized("relu"), tmp_path / "out")
    assert type(load_sae(tmp_path / "out")).__name__ == "ReluSAE"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(SaeError, match="not an SAE folder"):
        save_sae(sae, tmp_path / "notes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "out"]  # no temporary folder left
