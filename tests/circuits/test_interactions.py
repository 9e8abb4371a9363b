"""Input interactions: the game's coalitions and values, a planted pair that SPEX must find, and bad
input as one clear line.

The planted case runs the toy induction model on ``[BOS] x1..x5 A B y1..y5 A``: the answer B at
the last position needs both the earlier A and the B after it (induction copies the token that
followed the earlier occurrence of the current token), so (A, B) is a pure pair interaction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectrascope.circuits.interactions import _Game, _players, prompt_interactions
from spectrascope.errors import SpectrascopeError
from spectrascope.mech.toy_models import load_toy_induction


@pytest.fixture(scope="module")
def toy():
    return load_toy_induction()


def planted_prompt(seed: int = 0) -> tuple[list[int], int, int, int, int]:
    """(prompt ids, answer B, wrong token, index of player A, index of player B)."""
    perm = (torch.randperm(63, generator=torch.Generator().manual_seed(seed)) + 1).tolist()
    x, a, b, y, wrong = perm[:5], perm[5], perm[6], perm[7:12], perm[12]
    return [0, *x, a, b, *y, a], b, wrong, 5, 6


def test_players_and_coalitions_of_a_token_prompt(toy):
    prompt, answer, wrong, _, _ = planted_prompt()
    units, prefix, suffix, words, _ = _players(prompt, None, toy)
    assert words == [str(t) for t in prompt[1:-1]]
    assert prefix == [0] and suffix == [prompt[-1]] and len(units) == 12  # BOS and the last token are fixed
    game = _Game(toy.hf, units, prefix, suffix, answer, wrong, 0, batch_size=4)
    everyone = np.ones(12, dtype=bool)
    without_a = everyone.copy()
    without_a[5] = False
    assert game.ids(everyone) == prompt
    assert game.ids(without_a) == prompt[:6] + prompt[7:]  # removed, not replaced
    values = game(np.stack([everyone, without_a, everyone]))
    with torch.no_grad():
        logits = toy.hf(torch.tensor([prompt])).logits[0, -1].double()
    assert values[0] == pytest.approx(float(logits[answer] - logits[wrong]), abs=1e-4)
    assert values[0] == values[2] and len(game.cache) == 2  # one model call per distinct coalition


def test_spex_finds_the_planted_pair(toy):
    prompt, answer, wrong, a, b = planted_prompt()
    result = prompt_interactions(toy, prompt, answer, wrong, budget=1000, max_order=2, seed=0)
    assert result.model_calls <= 1000 < 2 ** len(result.players)
    pairs = result.top(order=2, n=2)
    assert pairs["players"].iloc[0] == (a, b)
    # SPEX's decoder keeps or drops the small pairs depending on the CPU's float32 rounding (on
    # one machine it returned the planted pair alone): the planted pair must beat whatever is left.
    runner_up = abs(pairs["value"].iloc[1]) if len(pairs) > 1 else 0.0
    assert abs(pairs["value"].iloc[0]) > 3 * runner_up
    assert result.full_value > 5 and abs(result.empty_value) < 2
    loo = result.tokens.set_index("position")["loo"]
    assert loo[1 + a] > 5 and loo[1 + b] > 5  # removing either breaks the induction
    assert result.tokens["player"].tolist()[0] == -1 and result.tokens["player"].tolist()[-1] == -1


def test_bad_input_is_one_line(toy):
    prompt, answer, wrong, _, _ = planted_prompt()
    with pytest.raises(SpectrascopeError, match="unknown interaction method"):
        prompt_interactions(toy, prompt, answer, method="shap")
    with pytest.raises(SpectrascopeError, match="at least 2"):
        prompt_interactions(toy, [0, 5, 6], answer)
    with pytest.raises(SpectrascopeError, match="needs a model with a tokenizer"):
        prompt_interactions(toy, "The capital of France is", answer)
    with pytest.raises(SpectrascopeError, match="lightgbm"):
        prompt_interactions(toy, prompt, answer, wrong, method="proxyspex")
