"""Fill-in-the-middle: the config, the two ways to cut a document, and the transforms, all pure functions of
(tokens or text, seeded rng, FimConfig, tokenizer).

Used by the trainer's data loader (`apply_fim` on every packed context) and by the evals (`format_fim_prompt`).

Sample layouts (p, m, s: the prefix, middle and suffix tokens; P, M, S the <fim_prefix>, <fim_middle>,
<fim_suffix> sentinels):
    PSM                 P p S s M m
    SPM "served"        S s P p M m      (how the released model is prompted)
    SPM "paper"         P S s M p m      (Bavarian et al. 2022, BigCode Megatron)
Each piece is tokenized on its own, so decoding p, m and s and joining them gives back the document exactly.
Documents are cut as bytes-as-text (invalid UTF-8 bytes kept through "surrogateescape"), so even a context that
starts or ends inside a multi-byte character round-trips.

Cutting modes (`FimConfig.mode`):
- "pretrain": the FIM paper (Bavarian et al. 2022) / BigCode Megatron `permute`: two uniform character positions,
  each drawn from [0, len(text)] inclusive (Megatron's `np_rng.randint(low=0, high=len(contents) + 1, size=2)`),
  so the prefix, the middle and the suffix can each be empty.
- "finetune": the line-aware middles of the release's FIMv2 (docs/refact_1_6b.md). A row is picked with
  probability proportional to its length, then one splitter cuts the middle:
  "inside_row" two positions inside that row's content (p 0.05 in the release); "to_end_of_row" a random column
  to the end of the row, line break excluded (p 0.5); "multi_row" a random column to the end of the block: the
  middle stops before the first row, within `max_middle_rows`, that is blank or indented less than the starting
  row, and without one spans 1..`max_middle_rows` rows (p 0.45); "empty_middle" (share `empty_middle_rate`) a
  random cursor position and an empty middle, so that the model learns to answer <|endoftext|> at once. The
  release's empty-middle splitter inserts a space or newline into the prefix; ours never edits the text, so
  prefix + middle + suffix is always the document.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Mapping, Sequence

import numpy as np

from data_pipeline.config import config_from_dict

MODES = ("pretrain", "finetune")
SPM_VARIANTS = ("served", "paper")
# FIMv2 splitters of the release's fine-tuning pipeline (docs/refact_1_6b.md), in the order of `splitter_probs`.
SPLITTERS = ("inside_row", "to_end_of_row", "multi_row")


@dataclass(frozen=True)
class FimConfig:
    """How documents become fill-in-the-middle samples (the modes: above; docs/fim_and_shards.md)."""

    mode: str = "pretrain"
    rate: float = 0.5  # probability that a document becomes a FIM sample (0.9 per file in the release's fine-tuning)
    spm_rate: float = 0.5  # share of FIM samples in SPM order, the rest PSM
    spm_variant: str = "served"  # "served": <fim_suffix>s<fim_prefix>p<fim_middle>m ; "paper": <fim_prefix><fim_suffix>s<fim_middle>pm
    empty_middle_rate: float = 0.0  # finetune mode: share of FIM samples whose middle is empty
    loss_on_sentinels: bool = True  # False: the loss mask is False on <fim_prefix>, <fim_suffix>, <fim_middle>
    splitter_probs: tuple[float, float, float] = (0.05, 0.5, 0.45)  # inside_row, to_end_of_row, multi_row
    max_middle_rows: int = 32  # multi_row: look this far for a blank line / smaller indent, else 1..this many rows

    def __post_init__(self) -> None:
        # Hydra hands lists; keep the dataclass hashable and comparable.
        if not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in self.splitter_probs):
            raise ValueError(f"FimConfig: splitter_probs must be numbers, got {self.splitter_probs!r}")
        object.__setattr__(self, "splitter_probs", tuple(float(p) for p in self.splitter_probs))
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.spm_variant not in SPM_VARIANTS:
            problems.append(f"spm_variant must be one of {SPM_VARIANTS}, got {self.spm_variant!r}")
        for name in ("rate", "spm_rate", "empty_middle_rate"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                problems.append(f"{name} must be within [0, 1], got {value!r}")
        probs = self.splitter_probs
        # NaN or inf weights picked multi_row for every middle (or raised StopIteration mid-training)
        if len(probs) != len(SPLITTERS) or not all(0 <= p < math.inf for p in probs) or sum(probs) <= 0:
            problems.append(f"splitter_probs must be {len(SPLITTERS)} finite non-negative weights for {SPLITTERS}, "
                            f"got {probs!r}")
        if not 1 <= int(self.max_middle_rows) < 2**31:  # numpy's draw of 1..max_middle_rows overflowed past 2**63
            problems.append(f"max_middle_rows must be within [1, 2**31), got {self.max_middle_rows!r}")
        if problems:
            raise ValueError("FimConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "FimConfig":
        """Build from a config section (plain dict or OmegaConf), naming any key that is not a field."""
        return config_from_dict(cls, values, "FimConfig")


@dataclass(frozen=True)
class FimSplit:
    """One document cut in three; `prefix + middle + suffix` is the document, always."""

    prefix: str
    middle: str
    suffix: str
    kind: str = "chars"  # which splitter made it: "chars" (pretrain), a SPLITTERS name, or "empty_middle"

    @property
    def text(self) -> str:
        return self.prefix + self.middle + self.suffix


def fim_rng(seed: int, index: int) -> np.random.Generator:
    """The random source of sample `index` under `seed`: the same pair always gives the same draws."""
    if seed < 0 or index < 0:
        raise ValueError(f"fim_rng: seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(index), 0xF1A])))


# ---------- finetune mode (FIMv2) ----------

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


# ---------- samples and prompts ----------

ORDERS = ("psm", "spm")


def split_text(text: str, rng: np.random.Generator, cfg: FimConfig, cut_end: bool = False) -> FimSplit:
    """Cut one document into prefix, middle and suffix by the rules of `cfg.mode`; their concatenation is `text`."""
    if cfg.mode == "pretrain":  # two uniform character positions
        lo, hi = sorted(int(x) for x in rng.integers(0, len(text) + 1, size=2))
        return FimSplit(text[:lo], text[lo:hi], text[hi:], kind="chars")
    return split_lines(text, rng, cfg, cut_end=cut_end)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer.encode_bytes(text.encode("utf-8", "surrogateescape"))


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode_bytes(ids).decode("utf-8", "surrogateescape")


def _layout(prefix: list[int], middle: list[int], suffix: list[int], order: str, spm_variant: str,
            tokenizer: Any) -> tuple[list[int], list[int]]:
    """(ids, positions of the sentinels) of one FIM sample."""
    p, m, s = tokenizer.fim_prefix_id, tokenizer.fim_middle_id, tokenizer.fim_suffix_id
    if order == "psm":
        ids = [p, *prefix, s, *suffix, m, *middle]
        return ids, [0, 1 + len(prefix), 2 + len(prefix) + len(suffix)]
    if spm_variant == "served":
        ids = [s, *suffix, p, *prefix, m, *middle]
        return ids, [0, 1 + len(suffix), 2 + len(suffix) + len(prefix)]
    ids = [p, s, *suffix, m, *prefix, *middle]
    return ids, [0, 1, 2 + len(suffix)]


def fim_tokens(doc_tokens: Sequence[int], rng: np.random.Generator, cfg: FimConfig, tokenizer: Any,
               cut_end: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One document's tokens (no EOT) -> (FIM sample ids, loss mask). Always transforms; `apply_fim` rolls the rate.

    Draw order per document, after `apply_fim`'s rate draw: the split points, then PSM/SPM (as Megatron's `permute`).
    """
    ids_list = doc_tokens.tolist() if isinstance(doc_tokens, np.ndarray) else list(doc_tokens)  # fast list indexing
    split = split_text(_decode(tokenizer, ids_list), rng, cfg, cut_end=cut_end)
    order = "spm" if rng.random() < cfg.spm_rate else "psm"
    ids, sentinels = _layout(_encode(tokenizer, split.prefix), _encode(tokenizer, split.middle),
                             _encode(tokenizer, split.suffix), order, cfg.spm_variant, tokenizer)
    mask = np.ones(len(ids), dtype=bool)
    if not cfg.loss_on_sentinels:
        mask[sentinels] = False
    return np.asarray(ids, dtype=np.int64), mask


def apply_fim(tokens: Sequence[int] | np.ndarray, *, rng: np.random.Generator, cfg: FimConfig,
              tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """Context-level FIM on one packed training context (FIM paper section 4.1; BigCode Megatron `__getitem__`).

    `tokens` holds L ids, documents separated by EOT; the first and last document may be cut by the packing.
    Each non-empty document becomes a FIM sample with probability `cfg.rate`; the EOT separators stay (the loss is
    always on them). The result is truncated, or padded with <fim_pad>, back to L. Returns (int64 ids [L],
    bool loss mask [L]): mask[i] says whether token i is a training target; it is False on padding, and on the
    sentinels when `cfg.loss_on_sentinels` is False.
    """
    tokens = np.asarray(tokens)
    length = len(tokens)
    if cfg.rate <= 0.0:
        return tokens.astype(np.int64), np.ones(length, dtype=bool)
    eot = tokenizer.eot_id
    ids: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    start = produced = 0
    for end in [*np.flatnonzero(tokens == eot).tolist(), length]:
        if produced >= length:  # the rest would be truncated away: skip its (costly) re-tokenization
            break
        segment = tokens[start:end]
        if len(segment):
            if rng.random() < cfg.rate:
                seg_ids, seg_mask = fim_tokens(segment, rng, cfg, tokenizer, cut_end=end == length)
            else:
                seg_ids, seg_mask = segment.astype(np.int64), np.ones(len(segment), dtype=bool)
            ids.append(seg_ids)
            masks.append(seg_mask)
            produced += len(seg_ids)
        if end < length:
            ids.append(np.array([eot], dtype=np.int64))
            masks.append(np.ones(1, dtype=bool))
            produced += 1
        start = end + 1
    out = np.concatenate(ids)[:length] if ids else np.empty(0, dtype=np.int64)
    mask = np.concatenate(masks)[:length] if masks else np.empty(0, dtype=bool)
    missing = length - len(out)
    if missing > 0:
        out = np.concatenate([out, np.full(missing, tokenizer.fim_pad_id, dtype=np.int64)])
        mask = np.concatenate([mask, np.zeros(missing, dtype=bool)])
    return out, mask


def format_fim_prompt(prefix: str, suffix: str, order: str = "psm", spm_variant: str = "served",
                      tokenizer: Any = None) -> list[int]:
    """The prompt ids for infilling between `prefix` and `suffix`; the model then writes the middle and EOT.

    order "psm": P prefix S suffix M.  order "spm", variant "served": S suffix P prefix M.
    order "spm", variant "paper": P S suffix M prefix (the model continues the prefix with the middle).
    """
    if tokenizer is None:
        raise TypeError("format_fim_prompt: pass tokenizer= (a data_pipeline.tokenizer.RefactTokenizer)")
    if order not in ORDERS:
        raise ValueError(f"format_fim_prompt: order must be one of {ORDERS}, got {order!r}")
    if spm_variant not in SPM_VARIANTS:
        raise ValueError(f"format_fim_prompt: spm_variant must be one of {SPM_VARIANTS}, got {spm_variant!r}")
    ids, _ = _layout(_encode(tokenizer, prefix), [], _encode(tokenizer, suffix), order, spm_variant, tokenizer)
    return ids


def restore_document(ids: Sequence[int], tokenizer: Any) -> str:
    """Inverse of the FIM layouts: the document text of one sample (plain, PSM or either SPM), for checks and debugging.

    PSM with an empty prefix and paper-SPM share the layout `P S s M x`; both restore as x + s.
    """
    ids = [int(i) for i in ids]
    p, m, s = tokenizer.fim_prefix_id, tokenizer.fim_middle_id, tokenizer.fim_suffix_id
    if not ids or ids[0] not in (p, s):
        return _decode(tokenizer, ids)
    try:
        if ids[0] == s:  # served SPM: S s P p M m
            i_p = ids.index(p)
            i_m = ids.index(m, i_p)
            return _decode(tokenizer, ids[i_p + 1:i_m] + ids[i_m + 1:] + ids[1:i_p])
        i_s = ids.index(s)
        i_m = ids.index(m, i_s)
    except ValueError as err:
        raise ValueError(f"restore_document: a sentinel is missing (sample truncated?): {err}") from None
    # PSM: P p S s M m ; paper SPM: P S s M p m (then ids[1:i_s] is empty)
    return _decode(tokenizer, ids[1:i_s] + ids[i_m + 1:] + ids[i_s + 1:i_m])
