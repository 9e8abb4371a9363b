"""Short labels of ablation components on the report's axes."""

import pytest

from spectrascope.report.labels import edit_label


@pytest.mark.parametrize(
    ("component", "label"),
    [
        ("spectral:model.layers.0.mlp.down_proj.weight:bulk", "L0 mlp.down_proj: bulk only (tail removed)"),
        ("spectral:model.layers.29.self_attn.o_proj.weight:tail", "L29 self_attn.o_proj: tail only"),
        ("spectral:model.layers.3.self_attn.o_proj.weight:drop_top:8", "L3 self_attn.o_proj: top 8 removed"),
        ("spectral:transformer.h.2.attn.c_proj.weight:tail", "L2 attn.c_proj: tail only"),
        ("spectral:lm_head.weight:bulk", "lm_head: bulk only (tail removed)"),
        ("attn:4", "L4 attention"),
        ("mlp:0", "L0 MLP"),
        ("head:3.1", "head:3.1"),
        ("max head (layer 0)", "max head (layer 0)"),
    ],
)
def test_edit_label(component, label):
    assert edit_label(component) == label
