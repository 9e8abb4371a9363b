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
    with pytest.raises(SpectrascopeError, match="token budget"):
        list(token_batches(bert_tokenizer, TEXTS, max_tokens=0))
    with pytest.raises(CorpusError, match="no tokens"):
        list(token_batches(bert_tokenizer, [], max_tokens=10))
    with pytest.raises(SpectrascopeError, match="no tokenizer"):
        list(token_batches(None, TEXTS, max_tokens=10))


def test_rows_remember_their_texts(bert_tokenizer):
    from spectrascope.activations.batching import text_batches

    texts = ["alpha beta", "", "gamma delta epsilon", "zeta"]
    batches = list(text_batches(bert_tokenizer, texts, max_tokens=10_000, batch_tokens=8))
    indices = [int(i) for b in batches for i in b.text_index]
    assert indices == [0, 1, 2, 3] and len(batches) > 1
    for b in batches:
        for row, i in enumerate(b.text_index):
            n = int(b.attention_mask[row].sum())
            assert b.input_ids[row, :n].tolist() == bert_tokenizer(texts[int(i)])["input_ids"]
