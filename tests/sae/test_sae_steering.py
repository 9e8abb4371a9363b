"""Steering by a feature: scale 0 changes nothing, a large scale changes the loss and the text."""

from __future__ import annotations

import pytest

from spectrascope.sae.base import SaeError
from spectrascope.sae.registry import build_sae
from spectrascope.sae.steering import STEER_COLUMNS, steer_feature


def test_steering_changes_loss_with_scale(tiny):
    sae = build_sae("topk", 32, 16, k=2, seed=0)
    df = steer_feature(
        tiny,
        sae,
        3,
        scales=(0.0, 50.0),
        corpus="calendar,arithmetic",
        prompt="the day",
        max_new_tokens=4,
        tokens=100,
        site="blocks.0.hook_resid_post",
    )
    assert list(df.columns) == STEER_COLUMNS and len(df) == 4
    zero, big = df[df["scale"] == 0.0], df[df["scale"] == 50.0]
    assert (zero["loss_change"] == 0.0).all()
    assert (big["loss_change"].abs() > 1e-3).all()
    assert zero["generated"].iloc[0] != big["generated"].iloc[0]


def test_steering_checks_its_inputs(tiny):
    sae = build_sae("topk", 64, 16, k=2)
    with pytest.raises(SaeError, match="not in the residual stream"):
        steer_feature(tiny, sae, 0, site="blocks.0.mlp.hook_post", corpus="calendar")
    sae = build_sae("topk", 32, 16, k=2)
    with pytest.raises(SaeError, match="feature must be an index"):
        steer_feature(tiny, sae, 16, site="blocks.0.hook_resid_post", corpus="calendar")


def test_default_scales_follow_the_site_norm(tiny):
    sae = build_sae("topk", 32, 16, k=2, seed=0)
    df = steer_feature(tiny, sae, 1, corpus="calendar", max_new_tokens=2, tokens=50, site="blocks.0.hook_resid_post")
    scales = sorted(df["scale"].unique())
    assert len(scales) == 4 and scales[0] == 0.0
    assert scales[2] == pytest.approx(2 * scales[1]) and scales[3] == pytest.approx(4 * scales[1])
