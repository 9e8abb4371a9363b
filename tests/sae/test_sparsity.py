"""The sparsity controller and the after-training L0 match (spectrascope.sae.sparsity)."""

from __future__ import annotations

import pytest
import torch

from spectrascope.sae.jumprelu import JumpReluSAE
from spectrascope.sae.relu import ReluSAE
from spectrascope.sae.sparsity import SparsityCoefficient, active_count, match_l0
from spectrascope.sae.train import train_sae


def _identity_encoder(sae: torch.nn.Module) -> None:
    """W_enc = I, biases 0, no decoder bias on the input: pre-activations equal the inputs."""
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(sae.d_in, sae.d_sae))
        sae.b_enc.zero_()
        sae.b_dec.zero_()


ROWS = torch.tensor([[0.5, 0.2, 0.05], [0.4, 0.3, 0.1], [0.6, -0.1, 0.0]])
"""Pre-activations of three rows (identity encoder): sorted by size 0.6 0.5 0.4 0.3 0.2 0.1 0.05."""


def test_jumprelu_cutoffs_are_thresholds_moved_by_one_offset_and_clamped():
    sae = JumpReluSAE(3, 3, initial_threshold=0.25)
    _identity_encoder(sae)
    # thresholds 0.25: active 0.5, 0.4, 0.3, 0.6 -> L0 = (1 + 2 + 1) / 3
    assert active_count(ROWS, sae.firing_cutoffs(0.0)) == pytest.approx(4 / 3)
    # target 2 per row: 6 of the 7 positive values must fire, so the cutoff sits in (0.05, 0.1)
    result = match_l0(sae, ROWS, target=2.0)
    assert result["l0_before"] == pytest.approx(4 / 3)
    assert result["l0_after"] == pytest.approx(2.0)
    assert 0.05 <= float(sae.threshold.detach()[0]) < 0.1 and torch.allclose(sae.threshold, sae.threshold[0])
    assert float((sae.encode(ROWS) > 0).sum()) == 6
    # past zero the cutoff stays 0: every positive pre-activation fires, never a negative one
    assert torch.equal(sae.firing_cutoffs(-5.0), torch.zeros(3))


def test_relu_offset_moves_the_encoder_bias():
    sae = ReluSAE(3, 3)
    _identity_encoder(sae)
    assert active_count(ROWS, sae.firing_cutoffs(0.0)) == pytest.approx(7 / 3)
    result = match_l0(sae, ROWS, target=1.0)
    # one per row: 0.6 0.5 0.4 fire, 0.3 does not -> cutoff in [0.3, 0.4)
    assert result["l0_after"] == pytest.approx(1.0)
    assert 0.3 <= result["offset"] < 0.4
    assert torch.allclose(sae.b_enc, torch.full((3,), -result["offset"]))
    with torch.no_grad():
        codes = sae.encode(ROWS)
    assert (codes > 0).sum(dim=1).tolist() == [1, 1, 1]
    assert float(codes[2, 0]) == pytest.approx(0.6 - result["offset"])


def test_controller_raises_the_coefficient_while_l0_is_too_high():
    coefficient = SparsityCoefficient(1.0, target=10.0, gain=0.1)
    coefficient.update(40.0)  # error clipped at +1
    assert coefficient.value == pytest.approx(torch.e**0.1)
    coefficient.update(5.0)  # error -0.5
    assert coefficient.value == pytest.approx(torch.e**0.05)
    fixed = SparsityCoefficient(1.0)
    fixed.update(40.0)
    assert fixed.value == 1.0


@pytest.mark.parametrize("arch", ["jumprelu", "relu"])
def test_a_target_l0_is_met_after_training(planted, arch):
    """Few steps leave the controller short of the target; the match closes the gap on training
    rows, and the L0 on rows it did not see stays close to it."""
    train, held_out = planted.activations[:16_000], planted.activations[16_000:]
    sae = train_sae(train, arch=arch, d_sae=64, k=6, tokens=8_192, batch_size=256)
    match = sae.metadata["training"]["l0_match"]
    assert abs(match["l0_before"] - 6) > 0.3  # the controller alone misses
    assert match["l0_after"] == pytest.approx(6, rel=0.02)
    with torch.no_grad():
        l0 = float((sae.encode(torch.as_tensor(held_out)) > 0).sum(dim=1).float().mean())
    assert l0 == pytest.approx(6, rel=0.1)


def test_a_fixed_coefficient_is_left_alone(planted):
    sae = train_sae(
        planted.activations[:4096], arch="jumprelu", d_sae=64, l0_coefficient=1e-3, tokens=2048, batch_size=256
    )
    assert sae.metadata["training"]["l0_match"] is None
