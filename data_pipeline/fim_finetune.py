"""Fine-tuning FIM split: the line-aware middles of the release's FIMv2 (REFACT-1.6B.md).

A row is picked with probability proportional to its length, then one splitter cuts the middle:
- "inside_row"     two positions inside that row's content (p 0.05 in the release);
- "to_end_of_row"  a random column to the end of the row, line break excluded (p 0.5);
- "multi_row"      a random column to the end of the block: the middle stops before the first row, within
                   `max_middle_rows`, that is blank or indented less than the starting row; without one it spans
                   1..`max_middle_rows` rows (p 0.45);
- "empty_middle"   (share `empty_middle_rate`) a random cursor position and an empty middle, so that the model
                   learns to answer <|endoftext|> at once.
The release's empty-middle splitter inserts a space or newline into the prefix; ours never edits the text, so
prefix + middle + suffix is always the document.
"""
from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

import numpy as np

from data_pipeline.fim_types import SPLITTERS, FimConfig, FimSplit

_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines splits on


def _content_len(line: str) -> int:
    """Length of a row without its line break."""
    if line.endswith("\r\n"):
        return len(line) - 2
    if line and line[-1] in _LINE_BREAKS:
        return len(line) - 1
    return len(line)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _is_blank(line: str) -> bool:
    return line.strip() == ""


def _pick_row(starts: list[int], n_rows: int, rng: np.random.Generator) -> int:
    """Row drawn with probability proportional to its length (the release's softmax of log-lengths): the row that
    holds a uniformly drawn character of the first `n_rows` rows."""
    return bisect_right(starts, rng.random() * starts[n_rows], 0, n_rows) - 1


def _pick_splitter(rng: np.random.Generator, cfg: FimConfig) -> str:
    if rng.random() < cfg.empty_middle_rate:
        return "empty_middle"
    target = rng.random() * sum(cfg.splitter_probs)
    for kind, cumulative in zip(SPLITTERS, accumulate(cfg.splitter_probs)):
        if target < cumulative and cumulative > 0:
            return kind
    return next(k for k, p in zip(reversed(SPLITTERS), reversed(cfg.splitter_probs)) if p > 0)


def _block_end(lines: list[str], row: int, n_rows: int, rng: np.random.Generator, max_rows: int) -> int:
    """First row after the middle: a blank or less-indented row within reach, else 1..max_rows rows on."""
    base = _indent(lines[row])
    for k in range(row + 1, min(row + 1 + max_rows, n_rows)):
        if _is_blank(lines[k]) or _indent(lines[k]) < base:
            return k
    return min(row + int(rng.integers(1, max_rows + 1)), n_rows)


def split_lines(text: str, rng: np.random.Generator, cfg: FimConfig, cut_end: bool = False) -> FimSplit:
    """FIMv2 split of one file. `cut_end`: the text stops mid-file, so its last row is partial and never ends a middle."""
    kind = _pick_splitter(rng, cfg)
    lines = text.splitlines(keepends=True)
    n_rows = len(lines) - 1 if cut_end and len(lines) > 1 else len(lines)
    if n_rows == 0:
        return FimSplit(text, "", "", kind=kind)
    starts = [0, *accumulate(map(len, lines))]
    row = _pick_row(starts, n_rows, rng)
    line, start = lines[row], starts[row]
    content = _content_len(line)

    if kind == "inside_row":
        lo, hi = sorted(int(x) for x in rng.integers(0, content + 1, size=2))
        begin, end = start + lo, start + hi
    elif kind == "to_end_of_row":
        begin, end = start + int(rng.integers(0, max(content, 1))), start + content
    elif kind == "multi_row":
        begin = start + int(rng.integers(0, max(content, 1)))
        end = starts[_block_end(lines, row, n_rows, rng, cfg.max_middle_rows)]
    else:  # empty_middle
        begin = end = start + int(rng.integers(0, content + 1))
    return FimSplit(text[:begin], text[begin:end], text[end:], kind=kind)
