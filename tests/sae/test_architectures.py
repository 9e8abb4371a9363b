"""Each architecture: the known answer (a planted dictionary is recovered), the activation's
definition on hand-made numbers, the JumpReLU pseudo-derivatives, and bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectrascope.sae.base import SaeError
from spectrascope.sae.batch_topk import batch_topk_codes
from spectrascope.sae.jumprelu import JumpReLUFunction, StepFunction
from spectrascope.sae.registry import ARCHITECTURES, architecture_class, build_sae
from spectrascope.sae.synthetic import best_cosines, recovery
from spectrascope.sae.topk import topk_codes
from spectrascope.sae.train import train_sae


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_recovers_planted_dictionary(arch, planted):
    """64 planted directions in 32 dimensions (superposition): mean best cosine >= 0.9."""
    sae = train_sae(planted.activations, arch=arch, d_sae=128, k=4, tokens=400_000, batch_size=256, seed=0)
    learned = sae.W_dec.detach().numpy()
    assert recovery(planted.directions, learned) >= 0.9
    random = build_sae(arch, 32, 128, k=4, seed=1).W_dec.detach().numpy()
    assert recovery(planted.directions, random) < 0.7  # the score is not trivially high


def test_best_cosine_known_answer():
    truth = np.array([[1.0, 0.0], [0.0, 1.0]])
    learned = np.array([[2.0, 0.0], [1.0, 1.0]])
    assert np.allclose(best_cosines(truth, learned), [1.0, np.sqrt(0.5)])


def test_topk_keeps_k_largest_positive():
    pre = torch.tensor([[3.0, -1.0, 2.0, 0.5], [-1.0, -2.0, 0.1, -3.0]])
    codes = topk_codes(pre, 2)
    assert torch.equal(codes, torch.tensor([[3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.1, 0.0]]))


def test_batch_topk_keeps_k_times_batch_over_the_batch():
    pre = torch.tensor([[5.0, 4.0, 3.0], [0.5, 0.2, 0.1]])
    codes = batch_topk_codes(pre, 1.5)  # 3 of 6 entries, all from row 0
    assert torch.equal(codes, torch.tensor([[5.0, 4.0, 3.0], [0.0, 0.0, 0.0]]))


def test_batch_topk_inference_is_a_global_threshold():
    sae = build_sae("batch_topk", 4, 3, k=1)
    with torch.no_grad():
        sae.threshold.fill_(1.0)
    assert torch.equal(sae.activate(torch.tensor([[0.5, 1.5, -2.0]])), torch.tensor([[0.0, 1.5, 0.0]]))


def test_jumprelu_forward_and_pseudo_derivatives():
    """Hand-computed: eps = 0.2, theta = 1. z = 1.05 is inside the kernel window, 2.0 is not."""
    z = torch.tensor([[1.05, 2.0, 0.5]], requires_grad=True)
    theta = torch.tensor([1.0, 1.0, 1.0], requires_grad=True)
    out = JumpReLUFunction.apply(z, theta, 0.2)
    assert torch.equal(out.detach(), torch.tensor([[1.05, 2.0, 0.0]]))
    out.sum().backward()
    assert torch.allclose(z.grad, torch.tensor([[1.0, 1.0, 0.0]]))
    assert torch.allclose(theta.grad, torch.tensor([-1.0 / 0.2, 0.0, 0.0]))  # -(theta/eps) K(0.25)
    z.grad = None
    theta.grad = None
    StepFunction.apply(z, theta, 0.2).sum().backward()
    assert z.grad is None or torch.all(z.grad == 0)
    assert torch.allclose(theta.grad, torch.tensor([-5.0, 0.0, 0.0]))  # -(1/eps) K(0.25)


def test_encode_decode_shapes_and_definition():
    sae = build_sae("relu", 6, 10, seed=3)
    x = torch.randn(2, 5, 6)
    codes = sae.encode(x)
    assert codes.shape == (2, 5, 10) and bool((codes >= 0).all())
    expected = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    assert torch.allclose(codes, expected)
    assert torch.allclose(sae(x), codes @ sae.W_dec + sae.b_dec)


def test_registry_and_bad_settings():
    assert architecture_class("standard") is ARCHITECTURES["relu"]
    with pytest.raises(SaeError, match="unknown SAE architecture"):
        architecture_class("gated-ish")
    with pytest.raises(SaeError, match="d_sae must be a positive integer"):
        build_sae("topk", 8, 0, k=1)
    with pytest.raises(SaeError, match="k must be between 1 and d_sae"):
        build_sae("topk", 8, 16, k=17)
    with pytest.raises(SaeError, match="needs k"):
        build_sae("topk", 8, 16)
    with pytest.raises(SaeError, match="whole number"):
        build_sae("topk", 8, 16, k=2.5)
    with pytest.raises(SaeError, match="between 1 and d_sae"):
        build_sae("jumprelu", 8, 16, k=-3)


def test_flat_api_exports():
    import spectrascope

    for name in ("train_sae", "load_sae", "save_sae", "evaluate_sae", "sae_features", "steer_feature"):
        assert callable(getattr(spectrascope, name))
