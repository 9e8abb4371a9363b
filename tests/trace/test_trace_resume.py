"""The agreement check of a resumed forward (spectrascope.trace.resume.resumed_agrees)."""

from __future__ import annotations

import torch

from spectrascope.trace.resume import resumed_agrees


def test_agreement_is_relative_to_the_largest_logit():
    full = torch.tensor([[9.0, -1.0, 0.0]])  # scale = 9 + 1 = 10: tolerance 1e-3 at rtol 1e-4
    assert resumed_agrees(full + 0.0009, full)
    assert not resumed_agrees(full + torch.tensor([[0.0, 0.0011, 0.0]]), full)
    assert not resumed_agrees(full[:, :2], full)  # another shape never agrees


def test_agreement_compares_every_chunk_of_a_batch():
    from spectrascope.trace.resume import AGREEMENT_CHUNK_ROWS

    full = torch.zeros(3, AGREEMENT_CHUNK_ROWS, 5)  # (batch, pos, vocab): 3 chunks of rows
    full[0, 0, 0] = -99.0  # the scale is the largest |logit|: 99 + 1 = 100, tolerance 0.01
    off = full.clone()
    off[2, -1, 4] += 0.011  # in the last chunk
    assert not resumed_agrees(off, full)
    off[2, -1, 4] = 0.009
    assert resumed_agrees(off, full)


def test_agreement_is_remembered_per_model_layer_and_masking():
    from torch import nn

    from spectrascope.trace.resume import remember_agreement, resume_known_to_agree

    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    assert not resume_known_to_agree(a, 3, masked=True)
    remember_agreement(a, 3, masked=True)
    assert resume_known_to_agree(a, 3, masked=True)
    assert not resume_known_to_agree(a, 3, masked=False) and not resume_known_to_agree(a, 2, masked=True)
    assert not resume_known_to_agree(b, 3, masked=True)


def test_resume_checked_runs_the_resumed_forward_only_until_it_agrees_once():
    from torch import nn

    from spectrascope.trace.resume import resume_checked

    hf, full, runs = nn.Linear(2, 2), torch.tensor([[1.0, 2.0]]), []

    def resumed(offset: float):
        return lambda: runs.append(offset) or full + offset

    assert not resume_checked(hf, 4, True, resumed(1.0), full)  # disagrees: not remembered
    assert resume_checked(hf, 4, True, resumed(0.0), full)
    assert resume_checked(hf, 4, True, resumed(5.0), full)  # remembered: not run again
    assert runs == [1.0, 0.0]
