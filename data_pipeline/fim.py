"""Fill-in-the-middle transforms: pure functions of (tokens or text, seeded rng, FimConfig, tokenizer).

Used by the trainer's data loader (`apply_fim` on every packed context) and by the evals (`format_fim_prompt`).

Sample layouts (p, m, s: the prefix, middle and suffix tokens; P, M, S the <fim_prefix>, <fim_middle>,
<fim_suffix> sentinels):
    PSM                 P p S s M m
    SPM "served"        S s P p M m      (how the released model is prompted)
    SPM "paper"         P S s M p m      (Bavarian et al. 2022, BigCode Megatron)
Each piece is tokenized on its own, so decoding p, m and s and joining them gives back the document exactly.
Documents are cut as bytes-as-text (invalid UTF-8 bytes kept through "surrogateescape"), so even a context that
starts or ends inside a multi-byte character round-trips.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from data_pipeline.fim_finetune import split_lines
from data_pipeline.fim_pretrain import split_chars
from data_pipeline.fim_types import MODES, SPLITTERS, SPM_VARIANTS, FimConfig, FimSplit, fim_rng

__all__ = [
    "FimConfig", "FimSplit", "fim_rng", "split_text", "fim_tokens", "apply_fim", "format_fim_prompt",
    "restore_document", "MODES", "SPLITTERS", "SPM_VARIANTS", "ORDERS",
]

ORDERS = ("psm", "spm")


def split_text(text: str, rng: np.random.Generator, cfg: FimConfig, cut_end: bool = False) -> FimSplit:
    """Cut one document into prefix, middle and suffix by the rules of `cfg.mode`; their concatenation is `text`."""
    if cfg.mode == "pretrain":
        return split_chars(text, rng)
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
