"""The shipped toy induction model: attention-only, learned induction, and ablation ground truth."""

from __future__ import annotations

import math

import pytest
import torch

from spectrascope.mech.ablation import ablate, all_heads
from spectrascope.mech.ablation_sweep import ablation_sweep
from spectrascope.mech.components import Head
from spectrascope.mech.head_scores import head_scores
from spectrascope.mech.metrics import repeated_loss
from spectrascope.mech.toy_models import (
    TOY_INDUCTION_DIR,
    is_toy_name,
    load_toy_induction,
    repeated_tokens,
)
from spectrascope.trace import run_with_cache


@pytest.fixture(scope="module")
def toy():
    return load_toy_induction()


@pytest.fixture(scope="module")
def scores(toy):
    return head_scores(toy, n_seq=32, seq_len=20, seed=0)


@pytest.fixture(scope="module")
def losses(toy):
    """Metrics on 32 held-out sequences (seed 7): first-copy and second-copy loss."""
    return repeated_loss(toy, 32, 20, seed=7, copy="first"), repeated_loss(toy, 32, 20, seed=7, copy="second")


def test_checkpoint_is_small_and_attention_only(toy):
    size = sum(p.stat().st_size for p in TOY_INDUCTION_DIR.iterdir())
    assert size < 512 * 1024
    assert not toy.hf.training
    assert toy.hf.config.num_hidden_layers == 2 and toy.hf.config.num_attention_heads == 4
    for layer in toy.hf.model.layers:
        for proj in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
            assert proj.weight.count_nonzero() == 0 and not proj.weight.requires_grad
    _, cache = run_with_cache(toy.hf, repeated_tokens(4), "mlp_out")
    assert all(torch.count_nonzero(v) == 0 for v in cache.values())  # the MLP output is exactly 0
    assert is_toy_name("toy-induction") and is_toy_name("toy_induction") and not is_toy_name("smollm2-135m")


def test_repeated_tokens():
    ids = repeated_tokens(5, 20, seed=3)
    assert ids.shape == (5, 41)
    assert (ids[:, 0] == 0).all()
    assert torch.equal(ids[:, 1:21], ids[:, 21:])
    assert all(len(set(row[1:21].tolist())) == 20 for row in ids)  # distinct within a copy
    assert ids[:, 1:].min() >= 1 and ids.max() <= 63
    assert torch.equal(ids, repeated_tokens(5, 20, seed=3))
    assert not torch.equal(ids, repeated_tokens(5, 20, seed=4))


def test_the_toy_learned_in_context_copying(toy, losses):
    first, second = losses[0](toy), losses[1](toy)
    assert first > 0.9 * math.log(63)  # the first copy is unpredictable
    assert second < 0.01  # the second copy is predicted in context


def test_head_scores_find_the_previous_token_and_induction_heads(scores):
    layer0, layer1 = scores[scores.layer == 0], scores[scores.layer == 1]
    best_previous = layer0.sort_values("previous_token").iloc[-1]
    assert best_previous["previous_token"] > 0.6
    assert scores["previous_token"].idxmax() == best_previous.name  # the strongest one of the whole model
    assert (layer1["induction"] > 0.9).sum() >= 1
    assert (scores.loc[scores.layer == 0, "induction"] < 0.2).all()  # no induction head in layer 0
    assert (scores.loc[scores.layer == 1, "previous_token"] < 0.2).all()
    strong = layer1[layer1["induction"] > 0.5]
    assert (strong["duplicate_token"] < 0.05).all()  # induction heads look one past the duplicate


def _named(scores, kind, threshold, layer):
    rows = scores[(scores.layer == layer) & (scores[kind] > threshold)]
    return [Head(int(r.layer), int(r.head)) for r in rows.itertuples()]


def test_ablating_the_circuit_destroys_in_context_learning(toy, scores, losses):
    """Mean ablation (reference: other repeated sequences) of the previous-token head, or of all
    induction heads together, brings the second-copy loss back to about the first-copy loss;
    mean-ablating every other head at once leaves it near 0."""
    first_metric, second_metric = losses
    first = first_metric(toy)
    reference = repeated_tokens(32, 20, seed=11)
    previous = _named(scores, "previous_token", 0.6, layer=0)
    induction = _named(scores, "induction", 0.5, layer=1)
    others = [h for h in all_heads(toy) if h not in previous + induction]
    assert previous and induction and others
    with ablate(toy, previous, mode="mean", reference=reference):
        assert second_metric(toy) > 0.8 * first
    with ablate(toy, induction, mode="mean", reference=reference):
        assert second_metric(toy) > 0.8 * first
    with ablate(toy, others, mode="mean", reference=reference):
        assert second_metric(toy) < 0.1
    # zero ablation of the circuit is even worse than no context at all
    with ablate(toy, induction):
        assert second_metric(toy) > first
    # one at a time: the previous-token head is the single most damaging head
    table = ablation_sweep(toy, "all", second_metric, mode="mean", reference=reference)
    worst = table.sort_values("damage").iloc[-1]
    assert (int(worst["layer"]), int(worst["head"])) == (previous[0].layer, previous[0].head)
    assert table.loc[[h in others for h in all_heads(toy)], "damage"].max() < 0.05


def test_cli_heads_and_ablate_on_the_toy(run_cli, tmp_path):
    import pandas as pd

    code, out, _ = run_cli("heads", "toy-induction", "--n-seq", "8", "--out", str(tmp_path))
    assert code == 0 and "induction" in out
    scores = pd.read_parquet(tmp_path / "head_scores.parquet")
    kinds = ["induction", "previous_token", "duplicate_token"]
    assert list(scores.columns) == ["layer", "head", *(f"{k}{s}" for k in kinds for s in ("", "_lo", "_hi"))]
    code, out, _ = run_cli("ablate", "toy-induction", "--heads", "all", "--quiet", "--out", str(tmp_path))
    assert code == 0
    table = pd.read_parquet(tmp_path / "ablation.parquet")
    assert len(table) == 8 and set(table["metric"]) == {"induction_loss"}
    assert (tmp_path / "ablation.csv").exists()
    code, _, err = run_cli("ablate", "toy-induction", "--heads", "5.1", "--out", str(tmp_path))
    assert code == 2 and err.strip() == "error: head:5.1: layer 5 does not exist (the model has layers 0..1)"
    code, _, err = run_cli("ablate", "toy-induction", "--heads", "0.7", "--out", str(tmp_path))
    assert code == 2 and "head 7 does not exist (layer 0 has heads 0..3)" in err and len(err.strip().splitlines()) == 1
