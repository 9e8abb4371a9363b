"""Budgets below what the statistics need are named, against minimums computed by hand."""

from spectrascope.study.budget import StudyBudget


def test_the_default_budget_meets_every_minimum_on_smollm2():
    assert StudyBudget().shortfalls(d_model=576) == []  # 4,608 = 8 x 576 activation tokens


def test_the_activation_minimum_scales_with_the_residual_width():
    # d = 2,048: 8 x 2,048 = 16,384 tokens wanted, the default's 4,608 fall short
    assert StudyBudget().shortfalls(d_model=2048) == ["activation_tokens 4,608 (16,384)"]
    assert StudyBudget().shortfalls(d_model=None) == []  # without d it is not checked


def test_the_small_preset_falls_short_of_every_minimum():
    assert StudyBudget.small().shortfalls(d_model=576) == [
        "activation_tokens 256 (4,608)",
        "cka_tokens 128 (4,096)",
        "loss_tokens 96 (4,096)",
        "min_loss_texts 2 (16)",
        "head_sequences 4 (32)",
    ]


def test_one_short_budget_is_named_alone():
    assert StudyBudget().with_overrides(head_sequences=31).shortfalls(576) == ["head_sequences 31 (32)"]
