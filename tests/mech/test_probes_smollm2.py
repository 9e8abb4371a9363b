"""Probes, calendar circles and steering on the real SmolLM2-135M (integration).

Thresholds sit well inside the values measured with these exact inputs (seed 0), given
in each test, so that they hold on any machine but still fail if the method breaks.
"""

from __future__ import annotations

import pytest

from spectrascope.mech.circular import calendar_experiment
from spectrascope.mech.steering import steering_effect, steering_vector

pytestmark = pytest.mark.integration

FRENCH = [
    "Le chat dort sur le canapé.",
    "Nous allons au marché demain matin.",
    "Il fait très beau aujourd'hui.",
    "Je voudrais un café, s'il vous plaît.",
    "La maison est grande et belle.",
    "Elle lit un livre dans le jardin.",
]
ENGLISH = [
    "The cat is sleeping on the sofa.",
    "We are going to the market tomorrow morning.",
    "The weather is very nice today.",
    "I would like a coffee, please.",
    "The house is big and beautiful.",
    "She is reading a book in the garden.",
]
FRENCH_WORDS = [" le", " la", " les", " de", " du", " des", " un", " une", " est", " et", " au"]
ENGLISH_PROMPTS = [
    "My favourite food is",
    "Yesterday I went to the",
    "The children played in the",
    "In the morning, we",
]


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M (on one torch thread: tests/mech/conftest.py)."""
    from spectrascope.models.loaded import load_model

    return load_model("smollm2-135m")


def test_month_identity_is_decodable_at_the_last_token_in_middle_layers(smollm2) -> None:
    """Month named before the final period, probed at the period (measured: 0.73 / 0.60 / 0.98 accuracy, controls <= 0.13)."""
    df = calendar_experiment(smollm2, max_texts=180, targets=("month",), layers=[6, 10, 16], position="last")
    chance = 1 / 12
    assert (df["accuracy"] > chance + 0.3).all()
    assert (df["control_accuracy"] < 0.3).all()
    best = df.loc[df["accuracy"].idxmax()]
    assert best["accuracy"] > 0.8 and best["selectivity"] > 0.5


def test_months_and_weekdays_lie_on_calendar_circles(smollm2) -> None:
    """At the month/weekday word, layer 12 (measured: circle R^2 0.90 vs control 0.19 for months, order 0.83;
    0.95 vs 0.39 for weekdays, order 1.0)."""
    df = calendar_experiment(smollm2, max_texts=180, layers=[12], position="word").set_index("target")
    month, weekday = df.loc["month"], df.loc["weekday"]
    assert month["circle_r2"] > month["circle_r2_control"] + 0.4 and month["circle_r2"] > 0.7
    assert month["order_score"] >= 0.6  # random order: 0.18
    assert weekday["circle_r2"] > weekday["circle_r2_control"] + 0.3 and weekday["circle_r2"] > 0.75
    assert weekday["order_score"] >= 0.7  # random order: 0.33
    # at the word itself the class is the token: Hewitt & Liang's type control is as easy as the task
    assert (df["control"] == "types").all() and (df["selectivity"].abs() < 0.15).all()


def test_french_minus_english_steers_towards_french(smollm2) -> None:
    """Layer 10, mean-token difference of means (measured French-word log-prob change at scale 1:
    +6.4, +3.2, +1.0, +5.6 nats; at scale -1 between -1.4 and +0.2)."""
    vector = steering_vector(smollm2, FRENCH, ENGLISH, layer=10)
    df = steering_effect(smollm2, ENGLISH_PROMPTS, vector, 10, scales=[0, 0.25, 0.5, 1, -1], targets=FRENCH_WORDS)
    by_scale = df.groupby("scale")
    kl = by_scale["kl_from_unsteered"].mean()
    assert kl[0] == 0 and kl[0.25] < kl[0.5] < kl[1.0]
    change = df[df["scale"] == 1.0]["target_logprob_change"]
    assert (change > 0.3).all() and change.mean() > 2.0
    assert df[df["scale"] == -1.0]["target_logprob_change"].mean() < 0.5


def test_positive_sentiment_direction_suppresses_negative_words(smollm2) -> None:
    """Layer 10 (measured negative-word log-prob change: -1.5, -2.1, -1.0 at scale 1; +2.3, +2.9, +0.5 at -1)."""
    positive = [
        "I love this movie, it is wonderful.",
        "What a fantastic day, I am so happy.",
        "The food was delicious and the staff were great.",
        "This is the best book I have ever read.",
    ]
    negative = [
        "I hate this movie, it is terrible.",
        "What an awful day, I am so sad.",
        "The food was disgusting and the staff were rude.",
        "This is the worst book I have ever read.",
    ]
    vector = steering_vector(smollm2, positive, negative, layer=10)
    prompts = ["I think the new restaurant is", "Overall, my experience was", "The weather this weekend was"]
    bad_words = [" terrible", " bad", " awful", " horrible", " disappointing", " poor"]
    df = steering_effect(smollm2, prompts, vector, 10, scales=[1.0, -1.0], targets=bad_words)
    assert (df[df["scale"] == 1.0]["target_logprob_change"] < -0.3).all()
    assert (df[df["scale"] == -1.0]["target_logprob_change"] > 0.1).all()
