"""The activation store: the right vectors (first position left out), held-out texts never read,
chunks that mix domains, resuming, shuffled reading that sees every row once, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from spectrascope.errors import CorpusError, SiteError
from spectrascope.sae.base import SaeError
from spectrascope.sae.store import ActivationStore, build_store, is_held_out
from spectrascope.trace import run_with_cache

SITE = "blocks.1.hook_resid_post"


def _all_rows(store: ActivationStore) -> dict[str, torch.Tensor]:
    chunks = [store.chunk(i) for i in range(len(store.meta["chunks"]))]
    return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}


def test_store_holds_the_site_activations_without_the_first_position(tiny, tmp_path):
    from spectrascope.corpora import load_corpus

    store = build_store(tiny, SITE, "calendar,arithmetic", 3000, tmp_path / "s", chunk_tokens=2000)
    assert store.meta["complete"] and store.n_tokens == 3000 and store.d == 32
    rows = _all_rows(store)
    assert rows["activations"].dtype == torch.float16
    assert not any(is_held_out(int(t)) for t in rows["text"].unique())
    assert int(rows["position"].min()) == 1  # the attention sink is left out
    assert set(rows["domain"].tolist()) == {0, 1}
    assert min(store.meta["chunks"][0]["by_domain"]) > 0  # domains are visited round-robin: chunks mix them
    first = (rows["domain"] == 1) & (rows["text"] == 0)  # arithmetic text 0
    text = load_corpus("arithmetic").texts[0]
    ids = tiny.tokenizer(text, return_tensors="pt")["input_ids"]
    _, cache = run_with_cache(tiny.hf, ids, SITE)
    expected = cache[SITE][0, 1:].half()
    assert torch.equal(rows["activations"][first], expected)
    assert rows["position"][first].tolist() == list(range(1, ids.shape[1]))


def test_resume_continues_after_the_last_chunk(tiny, tmp_path):
    whole = build_store(tiny, SITE, "calendar,arithmetic", 2500, tmp_path / "whole", chunk_tokens=600)
    cut = tmp_path / "cut"
    build_store(tiny, SITE, "calendar,arithmetic", 2500, cut, chunk_tokens=600)
    meta = json.loads((cut / "meta.json").read_text())
    kept = meta["chunks"][:2]
    for chunk in meta["chunks"][2:]:
        (cut / chunk["file"]).unlink()
    # the cursors as they were when the second chunk was recorded: rebuild them from the kept chunks
    first_two = [ActivationStore(cut, meta).chunk(i) for i in range(2)]
    for d, state in enumerate(meta["domains"]):
        texts = torch.cat([c["text"][c["domain"] == d] for c in first_two])
        state["tokens"] = int(texts.numel())
        train_order = [i for i in range(10_000) if not is_held_out(i)]
        state["next_text"] = train_order.index(int(texts.max())) + 1
    meta.update(chunks=kept, complete=False)
    (cut / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SaeError, match="incomplete"):
        ActivationStore.open(cut)
    resumed = build_store(tiny, SITE, "calendar,arithmetic", 2500, cut, chunk_tokens=600)
    a, b = _all_rows(whole), _all_rows(resumed)
    key = lambda r: sorted(zip(r["domain"].tolist(), r["text"].tolist(), r["position"].tolist()))
    assert key(a) == key(b)
    assert resumed.n_tokens == whole.n_tokens == 2500


def test_shuffled_reading_sees_every_row_once(tiny, tmp_path):
    store = build_store(tiny, SITE, "calendar,arithmetic", 2000, tmp_path / "s", chunk_tokens=500, dtype="bfloat16")
    assert _all_rows(store)["activations"].dtype == torch.bfloat16
    batches = list(store.batches(128, torch.Generator().manual_seed(0), buffer_chunks=2))
    seen = torch.cat(batches)
    assert seen.shape == (2000, 32) and seen.dtype == torch.float32
    original = _all_rows(store)["activations"].float()
    assert torch.equal(seen.sum(dim=0), original.sum(dim=0)) or torch.allclose(seen.sum(0), original.sum(0), rtol=1e-5)
    assert not torch.equal(seen, original)  # shuffled


def test_bad_input(tiny, tmp_path):
    with pytest.raises(SiteError):
        build_store(tiny, "blocks.9.hook_resid_post", "calendar", 100, tmp_path / "a")
    with pytest.raises(SiteError, match="unknown site"):
        build_store(tiny, "resid_sideways", "calendar", 100, tmp_path / "a")
    with pytest.raises(SiteError, match="names 2 sites"):
        build_store(tiny, "resid_post", "calendar", 100, tmp_path / "a")
    with pytest.raises(SaeError, match="dtype"):
        build_store(tiny, SITE, "calendar", 100, tmp_path / "a", dtype="int8")
    (tmp_path / "empty.txt").write_text("   \n\n")
    with pytest.raises(CorpusError):
        build_store(tiny, SITE, str(tmp_path / "empty.txt"), 100, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("mine")
    with pytest.raises(SaeError, match="not an activation store"):
        build_store(tiny, SITE, "calendar", 100, tmp_path / "busy")
    build_store(tiny, SITE, "calendar", 100, tmp_path / "s")
    with pytest.raises(SaeError, match="other settings"):
        build_store(tiny, SITE, "calendar", 200, tmp_path / "s")


def test_by_length_rebatches_the_same_rows_longest_first():
    """Rows of lengths 3, 7, 2, 5 (two batches in text order) come back 7, 5, 3, 2 with their ids,
    masks and kept tokens unchanged, each batch at its longest row's width and within budget."""
    from spectrascope.sae.store import TextBatch, by_length

    def batch(rows: list[list[int]], texts: list[int]) -> TextBatch:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), -1, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        keep = mask.bool().clone()
        keep[:, 0] = False
        return TextBatch(ids, mask, keep, torch.tensor(texts, dtype=torch.int32))

    rows = {10: [1, 2, 3], 11: [4, 5, 6, 7, 8, 9, 10], 12: [11, 12], 13: [13, 14, 15, 16, 17]}
    given = [batch([rows[10], rows[11]], [10, 11]), batch([rows[12], rows[13]], [12, 13])]
    out = list(by_length(given, pad=0, batch_tokens=14))
    assert [b.input_ids.shape for b in out] == [torch.Size([2, 7]), torch.Size([2, 3])]  # 7 x 2 <= 14; 3 x 2
    assert [t for b in out for t in b.texts.tolist()] == [11, 13, 10, 12]
    for b in out:
        for r, text in enumerate(b.texts.tolist()):
            n = len(rows[text])
            assert b.input_ids[r, :n].tolist() == rows[text] and int(b.attention_mask[r].sum()) == n
            assert b.keep[r].tolist() == [False] + [True] * (n - 1) + [False] * (b.input_ids.shape[1] - n)
            assert (b.input_ids[r, n:] == 0).all()
    assert [b.input_ids.shape[0] for b in by_length(given, pad=0, batch_tokens=1)] == [1, 1, 1, 1]  # a row at least
