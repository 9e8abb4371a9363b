"""User corpora from paths, and the errors users see."""

from __future__ import annotations

import json
import sys
import types

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spectrascope.corpora import corpus_texts, load_corpus, load_path
from spectrascope.errors import CorpusError, SpectrascopeError


def _error(spec, **kwargs) -> str:
    """Load ``spec`` expecting a CorpusError; return its message (checked to be one line)."""
    with pytest.raises(CorpusError) as info:
        load_corpus(spec, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    assert isinstance(info.value, SpectrascopeError)
    return message


# --- plain text --------------------------------------------------------------------------


def test_txt_with_blank_lines_gives_one_document_per_paragraph(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("First para\nstill first.\n\n\n  Second para.  \n \nThird.\n", encoding="utf-8")
    corpus = load_corpus(path)
    assert corpus.texts == ["First para\nstill first.", "Second para.", "Third."]
    assert corpus.name == "notes" and corpus.source == str(path)
    assert corpus.labels is None
    assert "unknown" in corpus.license


def test_txt_without_blank_lines_gives_one_document_per_line(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("alpha\r\nbeta\n  gamma  \n", encoding="utf-8")
    assert load_corpus(str(path)).texts == ["alpha", "beta", "gamma"]
    assert load_corpus(str(path), max_texts=2).texts == ["alpha", "beta"]


def test_directory_of_txt_files_in_sorted_order(tmp_path):
    (tmp_path / "b.txt").write_text("b1\nb2\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("a para\n\nsecond a para\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("c\n", encoding="utf-8")
    (tmp_path / "ignored.md").write_text("not a txt\n", encoding="utf-8")
    corpus = load_path(tmp_path)
    assert corpus.texts == ["a para", "second a para", "b1", "b2", "c"]
    assert list(corpus.labels["file"]) == ["a.txt", "a.txt", "b.txt", "b.txt", "sub/c.txt"]
    assert corpus.name == tmp_path.name


# --- JSON lines ---------------------------------------------------------------------------


def _write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_jsonl_text_field_and_scalar_labels(tmp_path):
    path = tmp_path / "data.jsonl"
    _write_jsonl(path, [
        {"text": "hello", "label": 1, "meta": {"x": 1}},
        {"text": "   ", "label": 2, "meta": {}},
        {"text": None, "label": 3, "meta": {}},
        {"text": "world", "label": 4, "meta": {}},
    ])  # fmt: skip
    corpus = load_corpus(path)
    assert corpus.texts == ["hello", "world"]
    assert list(corpus.labels.columns) == ["label"]  # nested "meta" is not a label
    assert list(corpus.labels["label"]) == [1, 4]
    assert list(corpus.labels.index) == [0, 1]


def test_jsonl_custom_text_field(tmp_path):
    path = tmp_path / "data.jsonl"
    _write_jsonl(path, [{"body": "one"}, {"body": "two"}])
    corpus = load_corpus(path, text_field="body")
    assert corpus.texts == ["one", "two"] and corpus.labels is None


# --- Parquet ------------------------------------------------------------------------------


def test_parquet_text_column_and_labels(tmp_path):
    path = tmp_path / "data.parquet"
    table = pa.table({
        "text": ["first", None, "third"],
        "score": [0.5, 1.5, 2.5],
        "content": ["x", "y", "z"],
        "vec": [[1, 2], [3], []],
    })  # fmt: skip
    pq.write_table(table, path)
    corpus = load_corpus(path)
    assert corpus.texts == ["first", "third"]
    assert list(corpus.labels.columns) == ["score", "content"]
    assert list(corpus.labels["score"]) == [0.5, 2.5]
    assert load_corpus(path, text_field="content").texts == ["x", "y", "z"]


# --- saved `datasets` directories --------------------------------------------------------


def _saved_dataset_dir(tmp_path, name="saved"):
    directory = tmp_path / name
    directory.mkdir()
    (directory / "dataset_info.json").write_text("{}", encoding="utf-8")
    (directory / "state.json").write_text("{}", encoding="utf-8")
    return directory


def _fake_datasets_module(frames: dict[str, pd.DataFrame] | pd.DataFrame) -> types.ModuleType:
    """A stand-in for the ``datasets`` API this package uses (load_from_disk and friends)."""
    module = types.ModuleType("datasets")

    class Value:
        def __init__(self, dtype):
            self.dtype = dtype

    class Dataset:
        def __init__(self, frame):
            self.frame = frame
            self.column_names = list(frame.columns)
            self.features = {
                c: Value("int64" if pd.api.types.is_integer_dtype(frame[c]) else "string") for c in frame.columns
            }

        def __getitem__(self, column):
            return list(self.frame[column])

        def remove_columns(self, columns):
            return Dataset(self.frame.drop(columns=columns))

        def to_pandas(self):
            return self.frame.copy()

    class DatasetDict(dict):
        pass

    def load_from_disk(path):
        if isinstance(frames, dict):
            return DatasetDict({k: Dataset(v) for k, v in frames.items()})
        return Dataset(frames)

    module.Value, module.Dataset, module.DatasetDict = Value, Dataset, DatasetDict
    module.load_from_disk = load_from_disk
    return module


def test_saved_dataset_is_read_through_datasets(tmp_path, monkeypatch):
    frame = pd.DataFrame({"text": ["a", "", "c"], "label": [1, 2, 3]})
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets_module(frame))
    corpus = load_corpus(_saved_dataset_dir(tmp_path))
    assert corpus.texts == ["a", "c"]
    assert list(corpus.labels["label"]) == [1, 3]


def test_saved_dataset_dict_split_choice(tmp_path, monkeypatch):
    frames = {"train": pd.DataFrame({"text": ["tr"]}), "test": pd.DataFrame({"text": ["te"]})}
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets_module(frames))
    directory = _saved_dataset_dir(tmp_path)
    assert load_corpus(directory).texts == ["tr"]
    assert load_corpus(directory, split="test").texts == ["te"]
    assert "validation" in _error(directory, split="validation")
    assert "no column 'body'" in _error(directory, text_field="body")


def test_saved_dataset_without_datasets_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    message = _error(_saved_dataset_dir(tmp_path))
    assert "pip install datasets" in message


def test_real_datasets_save_to_disk_round_trip(tmp_path):
    import datasets  # a test extra

    datasets.Dataset.from_dict({"text": ["x", "y"], "n": [1, 2]}).save_to_disk(tmp_path / "ds")
    corpus = load_corpus(tmp_path / "ds")
    assert corpus.texts == ["x", "y"] and list(corpus.labels["n"]) == [1, 2]


# --- errors -------------------------------------------------------------------------------


def test_unknown_name_lists_the_builtins():
    message = _error("poetry")
    assert "unknown corpus 'poetry'" in message
    for name in ("code", "python-docs", "legal", "calendar", "arithmetic", "geography"):
        assert name in message


def test_missing_path(tmp_path):
    assert "does not exist" in _error(str(tmp_path / "nope.jsonl"))
    assert "does not exist" in _error("some/dir/file")
    assert "does not exist" in _error(tmp_path / "code")  # a Path is never a built-in name


@pytest.mark.parametrize("content", ["", "   \n\n \t\n"])
def test_empty_text_file(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")
    assert "empty" in _error(path)


def test_empty_jsonl_and_all_blank_texts(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    assert "empty" in _error(path)
    _write_jsonl(path, [{"text": " "}, {"text": None}])
    assert "empty" in _error(path)


def test_invalid_json_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": oops}\n', encoding="utf-8")
    message = _error(path)
    assert "line 3" in message and "not valid JSON" in message


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"text": "ok"}\n["a"]\n', encoding="utf-8")
    assert "line 2" in _error(path)


def test_jsonl_missing_or_non_string_text_field(tmp_path):
    path = tmp_path / "fields.jsonl"
    _write_jsonl(path, [{"text": "ok"}, {"body": "no text"}])
    message = _error(path)
    assert "line 2" in message and "no field 'text'" in message and "text_field" in message
    _write_jsonl(path, [{"text": 5}])
    assert "not a string" in _error(path)


def test_parquet_missing_column_and_corrupt_file(tmp_path):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"body": ["x"]}), path)
    message = _error(path)
    assert "no column 'text'" in message and "body" in message
    pq.write_table(pa.table({"text": [1, 2]}), path)
    assert "not strings" in _error(path)
    path.write_bytes(b"this is not parquet at all")
    assert "not a readable Parquet file" in _error(path)


def test_non_utf8_text_file(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    assert "not UTF-8" in _error(path)


def test_unsupported_suffix_and_empty_directory(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("text\nhello\n", encoding="utf-8")
    assert "unsupported file type '.csv'" in _error(path)
    empty = tmp_path / "emptydir"
    empty.mkdir()
    assert "no .txt files" in _error(empty)


def test_bad_max_texts_and_empty_spec():
    assert "max_texts" in _error("calendar", max_texts=0)
    with pytest.raises(CorpusError, match="no corpus given"):
        corpus_texts(" , ")
    with pytest.raises(CorpusError, match="unknown corpus 'nope'"):
        corpus_texts("calendar,nope")
