"""Split long documents into model-sized pieces, deterministically.

Two splitters: :func:`chunk_paragraphs` for prose (pack blank-line-separated paragraphs up
to a character budget) and :func:`chunk_source` for Python source (pack function/class
blocks up to a line budget). Both keep the original text of each piece (no re-wrapping).
"""

from __future__ import annotations

import re
from itertools import pairwise

_BLANK_LINES = re.compile(r"\n[ \t]*\n")


def split_paragraphs(text: str) -> list[str]:
    """Return the blank-line-separated paragraphs of ``text``, stripped, empty ones dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [p.strip() for p in _BLANK_LINES.split(text) if p.strip()]


def chunk_paragraphs(text: str, max_chars: int = 1500) -> list[str]:
    """Pack consecutive paragraphs of ``text`` into chunks of at most ``max_chars`` characters.

    Paragraphs inside a chunk are joined by one blank line. A paragraph longer than
    ``max_chars`` is split at line breaks (a single line longer than that stays whole).
    Returns the chunks in document order; every chunk has non-whitespace content.
    """
    pieces: list[str] = []
    for paragraph in split_paragraphs(text):
        if len(paragraph) <= max_chars:
            pieces.append(paragraph)
        else:
            pieces.extend(_pack(paragraph.split("\n"), max_chars, "\n"))
    return _pack(pieces, max_chars, "\n\n")


def _pack(pieces: list[str], max_chars: int, sep: str) -> list[str]:
    """Greedily join consecutive ``pieces`` with ``sep`` while the result fits ``max_chars``."""
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if not piece.strip():
            continue
        candidate = piece if not current else current + sep + piece
        if current and len(candidate) > max_chars:
            chunks.append(current)
            current = piece
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


def chunk_source(source: str, max_lines: int = 40) -> list[tuple[int, int, str]]:
    """Split Python source into chunks of at most ``max_lines`` lines at block boundaries.

    A block starts at a non-blank line indented by at most 4 spaces (a top-level statement,
    a function, a class, a method) right after a blank line. Consecutive blocks are packed
    while they fit in ``max_lines``; a longer block is split at its inner blank lines, and
    as a last resort every ``max_lines`` lines.

    Returns ``(first_line, last_line, text)`` triples, 1-based inclusive line numbers, in
    file order; chunks with no non-whitespace text are dropped.
    """
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")

    def starts_block(i: int, max_indent: int | None) -> bool:
        line = lines[i]
        if i == 0 or not line.strip() or lines[i - 1].strip():
            return False
        indent = len(line) - len(line.lstrip(" "))
        return max_indent is None or indent <= max_indent

    ranges: list[tuple[int, int]] = []
    for start, end in _split_ranges(0, len(lines), lambda i: starts_block(i, 4)):
        if end - start <= max_lines:
            ranges.append((start, end))
            continue
        for sub_start, sub_end in _split_ranges(start, end, lambda i: starts_block(i, None)):
            for s in range(sub_start, sub_end, max_lines):
                ranges.append((s, min(s + max_lines, sub_end)))

    chunks: list[tuple[int, int, str]] = []
    current: tuple[int, int] | None = None
    for start, end in ranges:
        if current is not None and end - current[0] <= max_lines:
            current = (current[0], end)
            continue
        if current is not None:
            chunks.append(current)
        current = (start, end)
    if current is not None:
        chunks.append(current)

    out: list[tuple[int, int, str]] = []
    for start, end in chunks:
        while end > start and not lines[end - 1].strip():
            end -= 1
        while start < end and not lines[start].strip():
            start += 1
        if start < end:
            out.append((start + 1, end, "\n".join(lines[start:end])))
    return out


def _split_ranges(start: int, end: int, is_boundary) -> list[tuple[int, int]]:
    """Split the line range ``[start, end)`` before every index ``i`` with ``is_boundary(i)``."""
    cuts = [i for i in range(start + 1, end) if is_boundary(i)]
    bounds = [start, *cuts, end]
    return [(a, b) for a, b in pairwise(bounds) if b > a]


def round_robin(groups: list[list]) -> list:
    """Interleave ``groups``: the first item of each, then the second of each, and so on.

    Returns one flat list holding every item once. Built-in corpora made of several
    documents use it so that any prefix (``max_texts``) covers many documents.
    """
    out: list = []
    depth = max((len(g) for g in groups), default=0)
    for k in range(depth):
        out.extend(g[k] for g in groups if k < len(g))
    return out
