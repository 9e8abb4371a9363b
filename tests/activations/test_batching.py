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


def test_length_chunks_sort_rows_and_trim_right_padding():
    import torch

    from spectrascope.activations.batching import length_chunks

    lengths = [5, 2, 8, 3, 2]
    valid = torch.tensor([[1] * n + [0] * (8 - n) for n in lengths])
    chunks = length_chunks(valid, max_tokens=8)
    # sorted by length: rows 1, 4 (2), 3 (3), 0 (5), 2 (8); a chunk grows while rows x its
    # longest row <= 8: [1, 4] (2 x 2), then row 3 alone (3 x 3 = 9 > 8 with the next), ...
    assert [(rows.tolist(), width) for rows, width in chunks] == [([1, 4], 2), ([3], 3), ([0], 5), ([2], 8)]


def test_length_chunks_keep_the_full_width_of_left_padding():
    import torch

    from spectrascope.activations.batching import length_chunks

    valid = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert [width for _, width in length_chunks(valid, max_tokens=100)] == [4]


def test_batching_by_length_takes_the_same_texts_with_less_padding(bert_tokenizer):
    """The same texts and tokens as in text order (the budget still cuts the text where it runs
    out), batched shortest first: fewer padded positions."""
    from spectrascope.activations.batching import text_batches

    texts = [" ".join(["word"] * n) for n in [1, 9, 2, 8, 1, 7, 3, 9, 2, 6] * 3]
    in_order = list(text_batches(bert_tokenizer, texts, max_tokens=150, batch_tokens=40))
    by_length = list(text_batches(bert_tokenizer, texts, max_tokens=150, batch_tokens=40, by_length=True))

    def rows(batches):
        return {
            int(i): b.input_ids[r, : int(b.attention_mask[r].sum())].tolist()
            for b in batches
            for r, i in enumerate(b.text_index)
        }

    assert rows(by_length) == rows(in_order)
    assert sum(int(b.stats_mask.sum()) for b in by_length) == 150
    assert sum(b.input_ids.numel() for b in by_length) < sum(b.input_ids.numel() for b in in_order)
    lengths = [int(n) for b in by_length for n in b.attention_mask.sum(dim=1)]
    assert lengths == sorted(lengths)


def test_first_tokens_follow_the_text_index_not_the_batch_order():
    import torch

    from spectrascope.activations.batching import first_tokens
    from spectrascope.trace.passes import TextBatch

    def batch(texts, counts):
        width = max(counts) + 1
        stats = torch.tensor([[0] + [1] * n + [0] * (width - 1 - n) for n in counts])
        return TextBatch(torch.zeros_like(stats), (stats > 0) | (torch.arange(width) == 0), stats, torch.tensor(texts))

    # texts 0..3 hold 4, 2, 5, 3 statistic tokens, run as texts 3 and 1, then 0 and 2
    batches = [batch([3, 1], [3, 2]), batch([0, 2], [4, 5])]
    assert first_tokens(batches, 9) == {0: 4, 1: 2, 2: 3}  # 4 + 2 + the first 3 of text 2
    assert first_tokens(batches, 100) == {0: 4, 1: 2, 2: 5, 3: 3}
