"""The mean-ablation reference accumulated by a pass equals reference_values' own forwards."""

from __future__ import annotations

import pytest
import torch

from spectrascope.errors import InputError
from spectrascope.mech.ablation import AblationMode, PositionMeans, reference_values
from spectrascope.mech.components import AttnBlock, Head, MlpBlock
from spectrascope.mech.mean_reference import MeanReference, load_means, save_means
from spectrascope.trace.passes import TextBatch, run_pass

COMPONENTS = [AttnBlock(0), MlpBlock(1), Head(2, 1)]


def _batches() -> list[TextBatch]:
    """Two right-padded batches; the statistic tokens are every real token but the first."""
    torch.manual_seed(1)
    out = []
    for lengths in ((7, 4, 5), (3, 6)):
        width = max(lengths)
        ids = torch.randint(5, 200, (len(lengths), width))
        mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
        stats = mask.clone()
        stats[:, 0] = 0
        out.append(TextBatch(ids, mask, stats, torch.arange(len(lengths))))
    return out


def test_a_pass_gives_reference_values_means(tiny):
    """Same texts: the pass's first-position and other-token means equal reference_values'
    (which pads the two batches to one width and runs them in its own chunks)."""
    batches = _batches()
    collector = MeanReference(COMPONENTS)
    run_pass(tiny.hf, batches, [collector])
    got = collector.values(torch.float32)
    width = max(b.input_ids.shape[1] for b in batches)
    ids = torch.cat([torch.nn.functional.pad(b.input_ids, (0, width - b.input_ids.shape[1])) for b in batches])
    mask = torch.cat([torch.nn.functional.pad(b.attention_mask, (0, width - b.input_ids.shape[1])) for b in batches])
    expected = reference_values(tiny.hf, COMPONENTS, AblationMode.MEAN, {"input_ids": ids, "attention_mask": mask})
    for component in COMPONENTS:
        assert isinstance(got[component], PositionMeans)
        assert got[component].first.shape == expected[component].first.shape
        torch.testing.assert_close(got[component].first, expected[component].first, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[component].rest, expected[component].rest, rtol=1e-5, atol=1e-6)
    assert collector.n_first[AttnBlock(0)] == 5 and collector.n_rest[AttnBlock(0)] == 25 - 5


def test_hand_case_of_the_sums():
    """Activations 1..6 at positions 0-2 of two rows, the last of row 1 padding: first = (1 + 4) / 2,
    rest = (2 + 3 + 5) / 3."""
    collector = MeanReference([AttnBlock(0)])
    stat = torch.tensor([[False, True, True], [False, True, False]])
    state = type("State", (), {"stat": stat})()
    record = collector.site_functions(state)[AttnBlock(0).site]
    record(torch.arange(1.0, 7.0).view(2, 3, 1), AttnBlock(0).site)
    means = collector.values(torch.float64)[AttnBlock(0)]
    assert means.first.item() == 2.5 and means.rest.item() == pytest.approx(10 / 3)


def test_saved_means_come_back_and_a_missing_one_is_refused(tmp_path):
    values = {
        c: PositionMeans(torch.full((3,), float(i)), torch.full((3,), -float(i))) for i, c in enumerate(COMPONENTS)
    }
    path = tmp_path / "means.safetensors"
    save_means(path, values)
    back = load_means(path, COMPONENTS)
    assert back is not None and all(torch.equal(back[c].rest, values[c].rest) for c in COMPONENTS)
    assert load_means(path, [*COMPONENTS, MlpBlock(2)]) is None
    assert load_means(tmp_path / "absent.safetensors", COMPONENTS) is None
    path.write_bytes(b"not a safetensors file")
    assert load_means(path, COMPONENTS) is None


def test_a_component_the_pass_never_measured_is_an_error():
    with pytest.raises(InputError, match="no statistic token at attn:0"):
        MeanReference([AttnBlock(0)]).values(torch.float32)
