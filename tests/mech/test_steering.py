"""Steering on a tiny random Llama: exactness at scale 0, growth with scale, restoration, errors, CLI."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spectrascope.errors import SpectrascopeError
from spectrascope.mech.activation_cache import collect_activations
from spectrascope.mech.steering import (
    EFFECT_COLUMNS,
    next_token_table,
    steer,
    steering_effect,
    steering_vector,
)
from spectrascope.trace import run_with_cache

PROMPTS = ["The weather today is", "My favourite food is pizza and", "Hello"]
POSITIVE = ["I love this, it is wonderful.", "What a great day."]
NEGATIVE = ["I hate this, it is awful.", "What a terrible day."]


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _logits(tiny: types.SimpleNamespace, text: str) -> torch.Tensor:
    ids = tiny.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return tiny.hf(input_ids=ids).logits


def _vector(d: int = 32, norm: float = 4.0) -> torch.Tensor:
    v = torch.randn(d, generator=torch.Generator().manual_seed(3))
    return v / v.norm() * norm


def test_scale_zero_is_bit_identical(tiny) -> None:
    plain = _logits(tiny, PROMPTS[0])
    with steer(tiny, 1, _vector(), scale=0.0):
        steered = _logits(tiny, PROMPTS[0])
    assert torch.equal(plain, steered)
    effect = steering_effect(tiny, PROMPTS, _vector(), 1, scales=[0.0])
    assert (effect["kl_from_unsteered"] == 0).all()


def test_steer_adds_exactly_scale_times_vector(tiny) -> None:
    ids = tiny.tokenizer(PROMPTS[1], return_tensors="pt")["input_ids"]
    _, plain = run_with_cache(tiny.hf, ids, "blocks.1.hook_resid_post")
    with steer(tiny, 1, _vector(), scale=2.5):
        _, steered = run_with_cache(tiny.hf, ids, "blocks.1.hook_resid_post")
    delta = steered["blocks.1.hook_resid_post"] - plain["blocks.1.hook_resid_post"]
    torch.testing.assert_close(delta, (2.5 * _vector()).expand_as(delta), atol=1e-5, rtol=0)
    with steer(tiny, 1, _vector(), scale=1.0, positions="last"):
        _, last = run_with_cache(tiny.hf, ids, "blocks.1.hook_resid_post")
    delta = last["blocks.1.hook_resid_post"] - plain["blocks.1.hook_resid_post"]
    assert torch.count_nonzero(delta[0, :-1]) == 0
    torch.testing.assert_close(delta[0, -1], _vector(), atol=1e-5, rtol=0)


def test_kl_grows_with_scale(tiny) -> None:
    effect = steering_effect(tiny, PROMPTS, _vector(norm=2.0), 1, scales=[0, 0.5, 1, 2, 4, 8], targets=["the", "pizza"])
    assert list(effect.columns) == list(EFFECT_COLUMNS)
    assert len(effect) == 6 * len(PROMPTS)
    kl = effect.groupby("scale")["kl_from_unsteered"].mean().to_numpy()
    assert kl[0] == 0 and np.all(np.diff(kl) > 0)
    unsteered = effect[effect["scale"] == 0]
    assert (unsteered["target_logprob_change"] == 0).all() and unsteered["target_logprob"].lt(0).all()
    assert effect["top_prob"].between(0, 1).all()


def test_last_positions_match_one_prompt_at_a_time(tiny) -> None:
    """Batched right-padded prompts steered at each one's last token = each prompt alone."""
    batched = steering_effect(tiny, PROMPTS, _vector(), 2, scales=[3.0], positions="last")
    for i, prompt in enumerate(PROMPTS):
        alone = steering_effect(tiny, [prompt], _vector(), 2, scales=[3.0], positions="last")
        assert batched["kl_from_unsteered"][i] == pytest.approx(alone["kl_from_unsteered"][0], rel=1e-4, abs=1e-9)


def test_context_manager_restores_the_model(tiny) -> None:
    before = _hook_count(tiny.hf)
    plain = _logits(tiny, PROMPTS[0])
    with steer(tiny, 0, _vector(), scale=5.0):
        assert _hook_count(tiny.hf) == before + 1
        assert not torch.equal(_logits(tiny, PROMPTS[0]), plain)
    assert _hook_count(tiny.hf) == before
    with pytest.raises(RuntimeError, match="boom"), steer(tiny, 0, _vector(), scale=5.0):
        raise RuntimeError("boom")
    assert _hook_count(tiny.hf) == before
    assert torch.equal(_logits(tiny, PROMPTS[0]), plain)


def test_steering_vector_is_the_difference_of_means(tiny) -> None:
    vector = steering_vector(tiny, POSITIVE, NEGATIVE, 1, position="last")
    acts = collect_activations(tiny, POSITIVE + NEGATIVE, position="last", layers=[1])[1]
    expected = acts[:2].mean(0) - acts[2:].mean(0)
    np.testing.assert_allclose(vector.numpy(), expected, atol=1e-6)
    assert steering_vector(tiny, POSITIVE, NEGATIVE, 1).shape == (32,)  # default: mean over tokens


def test_steering_errors(tiny) -> None:
    with pytest.raises(SpectrascopeError, match="layer 7 does not exist"), steer(tiny, 7, _vector()):
        pass
    with pytest.raises(SpectrascopeError, match="1-D"), steer(tiny, 0, torch.zeros(2, 32)):
        pass
    with pytest.raises(SpectrascopeError, match="has 32"), steer(tiny, 0, torch.ones(5), scale=1.0):
        _logits(tiny, "hi")
    with pytest.raises(SpectrascopeError, match="at least one positive"):
        steering_vector(tiny, [], NEGATIVE, 0)
    with pytest.raises(SpectrascopeError, match="no prompts"):
        steering_effect(tiny, [], _vector(), 0)
    assert _hook_count(tiny.hf) == 0


def test_next_token_table(tiny) -> None:
    table = next_token_table(tiny, PROMPTS[0], top_k=5)
    assert list(table.columns) == ["rank", "token", "prob"] and len(table) == 5
    assert table["prob"].is_monotonic_decreasing
    steered = next_token_table(tiny, PROMPTS[0], top_k=5, steering={"layer": 1, "vector": _vector(), "scale": 4.0})
    assert not np.allclose(steered["prob"], table["prob"])


def test_steer_cli(tiny_dir: Path, tmp_path: Path) -> None:
    from spectrascope.cli import _register_commands, app

    folder = tiny_dir
    _register_commands()
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "steer",
            str(folder),
            "--positive",
            "|".join(POSITIVE),
            "--negative",
            "|".join(NEGATIVE),
            "--layer",
            "1",
            "--scale",
            "4",
            "--prompt",
            PROMPTS[0],
            "--top-k",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "before" in result.output and "KL(before || after)" in result.output
    bad = runner.invoke(
        app, ["steer", str(folder), "--positive", "a", "--negative", "b", "--layer", "9", "--prompt", "x"]
    )
    assert bad.exit_code != 0 and isinstance(bad.exception, SpectrascopeError)
