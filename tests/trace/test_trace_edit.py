"""Editing sites with `hooks`: replacements propagate, and the model is restored after."""

from __future__ import annotations

import pytest
import torch

from spectrascope.errors import SiteError
from spectrascope.trace import hooks, run_with_cache
from spectrascope.trace.architectures import bind
from spectrascope.trace.sites import SiteKind, site_name
from spectrascope.trace.tracer import model_output_tensor

FAMILIES = ["llama", "gpt2", "bert", "bert_mlm"]
EDITABLE = [kind for kind in SiteKind if kind is not SiteKind.PATTERN]


def _forward(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model_output_tensor(model(input_ids=ids))


@pytest.mark.parametrize("kind", EDITABLE, ids=lambda kind: kind.value)
@pytest.mark.parametrize("family", FAMILIES)
def test_an_edit_changes_the_output_and_is_undone(make_model, make_ids, no_hooks, family, kind) -> None:
    model = make_model(family)
    ids = make_ids()
    original = _forward(model, ids)
    seen: list[str] = []

    def shift(activation: torch.Tensor, name: str) -> torch.Tensor:
        seen.append(name)
        return activation + 0.5

    with hooks(model, {site_name(0, kind): shift}) as hooked:
        edited = _forward(model, ids)
        assert hooked == [site_name(0, kind)]
    assert seen == [site_name(0, kind)]
    assert not torch.allclose(edited, original)
    assert no_hooks(model)
    assert torch.equal(_forward(model, ids), original)


@pytest.mark.parametrize("family", FAMILIES)
def test_observing_hooks_return_none_and_change_nothing(make_model, make_ids, no_hooks, family) -> None:
    model = make_model(family)
    ids = make_ids()
    original = _forward(model, ids)
    counts: dict[str, int] = {}

    def count(activation: torch.Tensor, name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    with hooks(model, {"resid_post": count, "blocks.1.attn.hook_z": [count, count]}):
        assert torch.equal(_forward(model, ids), original)
    assert counts["blocks.0.hook_resid_post"] == 1
    assert counts["blocks.1.attn.hook_z"] == 2
    assert no_hooks(model)


def test_zero_ablating_a_head_in_hook_z(make_model, make_ids) -> None:
    model = make_model("llama")
    ids = make_ids()

    def ablate_head_2(z: torch.Tensor, name: str) -> torch.Tensor:
        z = z.clone()
        z[:, :, 2] = 0
        return z

    with hooks(model, {"blocks.1.attn.hook_z": ablate_head_2}):
        _, cache = run_with_cache(model, ids, sites=["blocks.1.attn.hook_z", "blocks.1.hook_attn_out"])
    z = cache["blocks.1.attn.hook_z"]
    assert torch.all(z[:, :, 2] == 0) and torch.any(z[:, :, 1] != 0)
    with torch.no_grad():
        expected = model.model.layers[1].self_attn.o_proj(z.flatten(-2))
    assert torch.equal(expected, cache["blocks.1.hook_attn_out"])


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_editing_resid_mid_edits_the_residual_and_the_mlp_input(make_model, make_ids, family) -> None:
    model = make_model(family)
    ids = make_ids()
    torch.manual_seed(3)
    replacement = torch.randn(2, 9, model.config.hidden_size)
    with hooks(model, {"blocks.0.hook_resid_mid": lambda activation, name: replacement}):
        sites = ["blocks.0.hook_resid_mid", "blocks.0.hook_mlp_out", "resid_post"]
        _, cache = run_with_cache(model, ids, sites=sites)
    block = bind(model).blocks[0]
    norm = block.post_attention_layernorm if family == "llama" else block.ln_2
    with torch.no_grad():
        mlp_out = block.mlp(norm(replacement))
    assert torch.equal(cache["blocks.0.hook_resid_mid"], replacement)
    assert torch.equal(cache["blocks.0.hook_mlp_out"], mlp_out)
    assert torch.equal(cache["blocks.0.hook_resid_post"], replacement + mlp_out)


def test_patching_resid_post_from_another_run(make_model, make_ids) -> None:
    model = make_model("gpt2")
    clean, corrupt = make_ids(seed=1), make_ids(seed=2)
    clean_logits, clean_cache = run_with_cache(model, clean, sites="blocks.1.hook_resid_post")
    patched = clean_cache["blocks.1.hook_resid_post"]
    with hooks(model, {"blocks.1.hook_resid_post": lambda activation, name: patched}):
        logits = _forward(model, corrupt)
    assert torch.equal(logits, clean_logits)  # everything downstream of layer 1 only sees the residual


def test_edits_chain_in_order(make_model, make_ids) -> None:
    model = make_model("llama")
    seen: list[float] = []

    def double(activation: torch.Tensor, name: str) -> torch.Tensor:
        return activation * 2

    def record(activation: torch.Tensor, name: str) -> None:
        seen.append(float(activation.abs().sum()))

    ids = make_ids()
    _, cache = run_with_cache(model, ids, sites="blocks.0.hook_mlp_out")
    with hooks(model, {"blocks.0.hook_mlp_out": [double, record]}):
        _forward(model, ids)
    assert seen == [pytest.approx(2 * float(cache["blocks.0.hook_mlp_out"].abs().sum()))]


def test_hooks_are_removed_when_the_block_raises(make_model, make_ids, hook_state) -> None:
    model = make_model("llama")
    ids = make_ids()
    with torch.no_grad():
        model(input_ids=ids, output_hidden_states=True)  # transformers installs its own, permanent capture hooks
    before = hook_state(model)
    with pytest.raises(RuntimeError, match="boom"), hooks(model, {"resid_pre": lambda activation, name: None}):
        assert hook_state(model) != before
        raise RuntimeError("boom")
    assert hook_state(model) == before


def test_hooks_are_removed_when_a_site_function_raises(make_model, make_ids, no_hooks) -> None:
    model = make_model("bert")

    def fail(activation: torch.Tensor, name: str) -> None:
        raise ValueError(f"failed at {name}")

    with (
        pytest.raises(ValueError, match="failed at blocks.1.hook_mlp_out"),
        hooks(model, {"blocks.1.hook_mlp_out": fail}),
    ):
        _forward(model, make_ids())
    assert no_hooks(model)


def test_pattern_is_observe_only(make_model, make_ids, no_hooks) -> None:
    model = make_model("gpt2")
    with (
        pytest.raises(SiteError, match="observe-only"),
        hooks(model, {"blocks.0.attn.hook_pattern": lambda pattern, name: pattern * 0}),
    ):
        _forward(model, make_ids())
    assert no_hooks(model)


@pytest.mark.parametrize(
    ("returned", "message"),
    [(torch.zeros(3), "returned shape"), ("zero", "returned str")],
)
def test_a_bad_replacement_is_a_site_error(make_model, make_ids, no_hooks, returned, message) -> None:
    model = make_model("llama")
    with (
        pytest.raises(SiteError, match=message),
        hooks(model, {"blocks.0.hook_resid_post": lambda activation, name: returned}),
    ):
        _forward(model, make_ids())
    assert no_hooks(model)


def test_an_unknown_site_registers_nothing(make_model, no_hooks) -> None:
    model = make_model("llama")
    with (
        pytest.raises(SiteError),
        hooks(model, {"resid_post": lambda a, n: None, "blocks.0.hook_nope": lambda a, n: None}),
    ):
        pass
    assert no_hooks(model)
