"""The agreement check of a resumed forward (spectrascope.trace.resume.resumed_agrees)."""

from __future__ import annotations

import torch

from spectrascope.trace.resume import resumed_agrees


def test_agreement_is_relative_to_the_largest_logit():
    full = torch.tensor([[9.0, -1.0, 0.0]])  # scale = 9 + 1 = 10: tolerance 1e-3 at rtol 1e-4
    assert resumed_agrees(full + 0.0009, full)
    assert not resumed_agrees(full + torch.tensor([[0.0, 0.0011, 0.0]]), full)
    assert not resumed_agrees(full[:, :2], full)  # another shape never agrees
