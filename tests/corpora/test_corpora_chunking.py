"""Chunking helpers: pieces are faithful, bounded, and in order."""

from __future__ import annotations

from spectrascope.corpora.chunking import (
    chunk_paragraphs,
    chunk_source,
    round_robin,
    split_paragraphs,
)


def test_split_paragraphs():
    assert split_paragraphs("a\nb\n\n \nc\r\n\r\nd  ") == ["a\nb", "c", "d"]
    assert split_paragraphs(" \n\n ") == []


def test_chunk_paragraphs_packs_within_budget():
    text = "\n\n".join(f"paragraph {i} " + "x" * 40 for i in range(20))
    chunks = chunk_paragraphs(text, max_chars=200)
    assert all(len(c) <= 200 for c in chunks)
    assert "\n\n".join(chunks) == text  # nothing lost, nothing reordered


def test_chunk_paragraphs_splits_a_long_paragraph_at_lines():
    paragraph = "\n".join(f"line {i:02d}" for i in range(50))
    chunks = chunk_paragraphs(paragraph, max_chars=100)
    assert all(len(c) <= 100 for c in chunks)
    assert "\n".join(chunks) == paragraph


SOURCE = (
    '''"""Module."""

import os


def small():
    return 1


class Big:
    """A class."""

    def method_a(self):
'''
    + "".join(f"        x{i} = {i}\n" for i in range(30))
    + """
    def method_b(self):
        return 2
"""
)


def test_chunk_source_respects_max_lines_and_keeps_every_line():
    chunks = chunk_source(SOURCE, max_lines=12)
    lines = SOURCE.split("\n")
    covered = set()
    for first, last, text in chunks:
        assert last - first + 1 <= 12
        assert text == "\n".join(lines[first - 1 : last])
        covered.update(range(first, last + 1))
    non_blank = {i + 1 for i, line in enumerate(lines) if line.strip()}
    assert non_blank <= covered
    assert [c[0] for c in chunks] == sorted(c[0] for c in chunks)


def test_chunk_source_cuts_at_definitions():
    chunks = chunk_source(SOURCE, max_lines=12)
    assert any(text.startswith("def small") or "\ndef small" in text for _, _, text in chunks)
    # the long method starts its own chunk instead of being cut after the class line
    assert any(text.lstrip().startswith("def method_a") for _, _, text in chunks)
    assert any("\n    def method_b(self):" in text for _, _, text in chunks)


def test_round_robin():
    assert round_robin([[1, 2, 3], [4], [5, 6]]) == [1, 4, 5, 2, 6, 3]
    assert round_robin([]) == []
