import pytest

from spectrascope.activations.batching import token_batches
from spectrascope.errors import CorpusError, SpectrascopeError

TEXTS = ["one two three four five", "six seven", "eight nine ten eleven twelve thirteen"] * 20


def test_budget_and_stats_mask(bert_tokenizer):
    batches = list(token_batches(bert_tokenizer, TEXTS, max_tokens=50, batch_tokens=64))
    assert sum(int(b["stats_mask"].sum()) for b in batches) == 50
    for b in batches:
        assert (b["stats_mask"][:, 0] == 0).all()  # first position never counted
        assert ((b["stats_mask"] == 1) <= (b["attention_mask"] == 1)).all()
        assert b["input_ids"].numel() <= 64 or b["input_ids"].shape[0] == 1


def test_keep_first_when_asked(bert_tokenizer):
    b = next(iter(token_batches(bert_tokenizer, TEXTS, max_tokens=10_000, skip_first=False)))
    assert (b["stats_mask"] == b["attention_mask"]).all()


def test_errors(bert_tokenizer):
    with pytest.raises(SpectrascopeError, match="max-tokens"):
        list(token_batches(bert_tokenizer, TEXTS, max_tokens=0))
    with pytest.raises(CorpusError, match="no tokens"):
        list(token_batches(bert_tokenizer, [], max_tokens=10))
    with pytest.raises(SpectrascopeError, match="no tokenizer"):
        list(token_batches(None, TEXTS, max_tokens=10))
