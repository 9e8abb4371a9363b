"""The trainer: seeded, unit-norm decoder, input scale folded exactly, dead features tracked
and resampled, in-memory input of both kinds, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectrascope.sae.base import SaeError
from spectrascope.sae.registry import build_sae
from spectrascope.sae.train import LOG_COLUMNS, DeadTracker, resample_dead, train_sae


def _small(planted, **kwargs):
    settings = {"arch": "topk", "d_sae": 64, "k": 4, "tokens": 20_000, "batch_size": 256, "seed": 0, **kwargs}
    return train_sae(planted.activations[:4000], **settings)


def test_same_seed_same_weights_other_seed_other_weights(planted):
    a, b, c = _small(planted), _small(planted), _small(planted, seed=1)
    assert torch.equal(a.W_dec, b.W_dec) and torch.equal(a.b_enc, b.b_enc)
    assert not torch.equal(a.W_dec, c.W_dec)


def test_decoder_rows_unit_norm_and_log(planted):
    sae = _small(planted, arch="jumprelu", log_every=10)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)
    assert list(sae.training_log.columns) == LOG_COLUMNS
    assert sae.training_log["tokens"].iloc[-1] == 20_000 // 256 * 256
    assert sae.metadata["training"]["tokens"] == 20_000 // 256 * 256


def test_tensor_and_array_inputs_agree(planted):
    a = _small(planted)
    b = train_sae(
        torch.from_numpy(planted.activations[:4000]), arch="topk", d_sae=64, k=4, tokens=20_000, batch_size=256, seed=0
    )
    assert torch.equal(a.W_dec, b.W_dec)


def test_input_scale_folding_is_exact():
    """An SAE trained on s*x, folded, encodes x to f(s*x)/s and reconstructs x^(s*x)/s."""
    torch.manual_seed(0)
    for arch in ("relu", "topk", "batch_topk", "jumprelu"):
        sae = build_sae(arch, 8, 20, k=3, seed=2)
        with torch.no_grad():
            sae.b_enc.normal_()
            sae.b_dec.normal_()
            if hasattr(sae, "threshold"):
                sae.threshold.uniform_(0.1, 0.5)
        x = torch.randn(30, 8)
        scale = 0.37
        scaled_codes, scaled_recon = sae.encode(scale * x), sae(scale * x)
        sae.fold_input_scale(scale)
        assert torch.allclose(sae.encode(x), scaled_codes / scale, atol=1e-5), arch
        assert torch.allclose(sae(x), scaled_recon / scale, atol=1e-5), arch


def test_dead_tracker_counts_tokens_since_fired():
    tracker = DeadTracker(3, dead_after_tokens=4, device=torch.device("cpu"))
    tracker.update(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    tracker.update(torch.tensor([[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
    assert tracker.since.tolist() == [2, 0, 4]
    assert tracker.dead.tolist() == [False, False, True]


def test_resampling_points_dead_features_at_badly_reconstructed_inputs():
    sae = build_sae("relu", 4, 3, seed=0)
    optimizer = torch.optim.Adam(sae.parameters())
    x = torch.zeros(5, 4)
    x[2] = torch.tensor([0.0, 0.0, 10.0, 0.0])  # the only input with an error
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_dec.zero_()
    n = resample_dead(sae, optimizer, x, torch.tensor([False, True, False]), torch.Generator().manual_seed(0))
    assert n == 1
    assert torch.allclose(sae.W_dec[1], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert float(sae.b_enc.detach()[1]) == 0.0


def test_dead_features_are_reported(planted):
    sae = _small(planted, d_sae=256, dead_after_tokens=512, resample=False, arch="relu", k=None, l1_coefficient=50.0)
    assert sae.metadata["training"]["final_dead_fraction"] > 0


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (np.zeros((10, 4, 2)), {}, "an \\(n, d\\) array"),
        (np.full((600, 4), np.nan), {}, "NaN or Inf"),
        (np.zeros((600, 4)), {}, "all zero"),
        (np.ones((100, 4)), {"batch_size": 256}, "fewer tokens"),
        (np.ones((600, 4)), {"tokens": 0}, "tokens must be a positive integer"),
        (np.ones((600, 4)), {"site": "blocks.0.hook_resid_post"}, "apply to a model"),
        (
            np.ones((600, 4)),
            {"device": "cuda:7"} if not torch.cuda.is_available() else {"device": "nonsense"},
            "device",
        ),
    ],
)
def test_bad_input_is_one_clear_error(data, kwargs, message):
    settings = {"arch": "topk", "d_sae": 8, "k": 2, "tokens": 1024, "batch_size": 128, **kwargs}
    with pytest.raises(SaeError, match=message):
        train_sae(data, **settings)


def test_progress_bar_shows_rate_loss_l0_dead(planted, capsys):
    train_sae(
        planted.activations[:2000],
        arch="topk",
        d_sae=16,
        k=2,
        tokens=2048,
        batch_size=256,
        device="auto",
        show_progress=True,
    )
    err = capsys.readouterr().err
    for piece in ("tok/s", "loss", "L0", "dead"):
        assert piece in err


def test_an_unwritable_output_is_refused_before_training(tmp_path):
    import numpy as np

    from spectrascope.errors import OutputError
    from spectrascope.sae.base import SaeError
    from spectrascope.sae.train import train_sae

    acts = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        train_sae(acts, arch="topk", d_sae=16, k=2, tokens=64, out=blocker / "sae")
    other = tmp_path / "not-an-sae"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(SaeError, match="not an SAE folder"):
        train_sae(acts, arch="topk", d_sae=16, k=2, tokens=10**9, out=other)  # refused at once, not after 1e9 tokens
