"""Token-level FIM: context-level transform, layouts, truncate/pad and mask, rates, determinism, prompts."""
from __future__ import annotations

import numpy as np
import pytest

from data_pipeline.fim import FimConfig, apply_fim, fim_rng, fim_tokens, format_fim_prompt, restore_document

P, M, S, PAD, EOT = 1, 2, 3, 4, 0


def _context(tokenizer, texts: list[str], slack: int) -> np.ndarray:
    """Documents joined by EOT, then `slack` EOTs: room for the FIM samples to grow without truncating a document."""
    ids: list[int] = []
    for t in texts:
        ids += tokenizer.encode(t) + [EOT]
    return np.asarray(ids + [EOT] * slack, dtype=np.uint16)


def _segments(ids: np.ndarray, mask: np.ndarray) -> list[list[int]]:
    real = ids[mask | (ids != PAD)].tolist()
    out, cur = [], []
    for t in real:
        if t == EOT:
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    return out


CONFIGS = [
    FimConfig(mode="pretrain", rate=1.0, spm_variant="served"),
    FimConfig(mode="pretrain", rate=1.0, spm_variant="paper"),
    FimConfig(mode="finetune", rate=1.0, spm_variant="served", empty_middle_rate=0.1, loss_on_sentinels=False),
    FimConfig(mode="finetune", rate=1.0, spm_variant="paper"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.mode}-{c.spm_variant}")
def test_every_document_restores_exactly(tokenizer, corpus, cfg):
    docs = [t for t in corpus if t]
    ctx = _context(tokenizer, docs, slack=64 * len(docs))
    for index in range(3):
        ids, mask = apply_fim(ctx, rng=fim_rng(11, index), cfg=cfg, tokenizer=tokenizer)
        assert ids.dtype == np.int64 and mask.dtype == bool and len(ids) == len(ctx) == len(mask)
        segments = _segments(ids, mask)[:len(docs)]
        assert [s[0] in (P, S) for s in segments] == [True] * len(docs)  # rate 1: all FIM
        assert [restore_document(s, tokenizer) for s in segments] == docs


def test_documents_cut_inside_a_character_round_trip(tokenizer, corpus):
    """A packed context can start or end inside a multi-byte character; the bytes must survive FIM."""
    text = corpus[-4] * 3
    ids = tokenizer.encode(text)
    cfgs = [FimConfig(mode="pretrain", rate=1.0), FimConfig(mode="finetune", rate=1.0, empty_middle_rate=0.2)]
    checked = 0
    for start in range(0, 12):
        for stop in range(len(ids) - 12, len(ids)):
            piece = ids[start:stop]
            raw = tokenizer.decode_bytes(piece)
            checked += raw != raw.decode("utf-8", "ignore").encode()  # really cut inside a character
            for k, cfg in enumerate(cfgs):
                sample, _ = fim_tokens(piece, fim_rng(start, 100 * stop + k), cfg, tokenizer, cut_end=True)
                assert restore_document(sample, tokenizer).encode("utf-8", "surrogateescape") == raw
    assert checked > 0


def test_rate_and_spm_share_within_tolerance(tokenizer, corpus):
    docs = [t[:200] for t in corpus[:10]]
    ctx = _context(tokenizer, docs, slack=40 * len(docs))
    cfg = FimConfig(mode="pretrain", rate=0.5, spm_rate=0.5)
    fim = spm = total = 0
    for index in range(100):
        ids, mask = apply_fim(ctx, rng=fim_rng(3, index), cfg=cfg, tokenizer=tokenizer)
        for s in _segments(ids, mask)[:len(docs)]:
            total += 1
            fim += s[0] in (P, S)
            spm += s[0] == S
    assert abs(fim / total - 0.5) < 0.05
    assert abs(spm / fim - 0.5) < 0.06


def test_truncates_to_the_context_length(tokenizer, corpus):
    ctx = np.asarray(tokenizer.encode(corpus[0])[:512])
    ids, mask = apply_fim(ctx, rng=fim_rng(0, 0), cfg=FimConfig(rate=1.0), tokenizer=tokenizer)
    assert len(ids) == 512 and mask.all()
    assert ids[0] in (P, S) and (ids == M).sum() <= 1


def test_pads_with_fim_pad_and_masks_padding(tokenizer):
    # one byte-level token per byte: re-tokenizing the pieces merges them, so the FIM sample gets shorter
    text = "def add(a, b):\n    return a + b\n" * 4
    byte_ids = tokenizer._byte_ids
    ctx = np.asarray([byte_ids[b] for b in text.encode()] + [EOT])
    ids, mask = apply_fim(ctx, rng=fim_rng(0, 1), cfg=FimConfig(rate=1.0), tokenizer=tokenizer)
    n_pad = int((ids == PAD).sum())
    assert n_pad > 0 and len(ids) == len(ctx)
    assert (ids[-n_pad:] == PAD).all() and not mask[-n_pad:].any() and mask[:-n_pad].all()
    assert restore_document(_segments(ids, mask)[0], tokenizer) == text


def test_loss_on_sentinels_false_masks_the_three_sentinels(tokenizer, corpus):
    docs = [corpus[4][:400], corpus[5][:400]]
    ctx = _context(tokenizer, docs, slack=80)
    for variant in ("served", "paper"):
        cfg = FimConfig(rate=1.0, spm_rate=0.5, loss_on_sentinels=False, spm_variant=variant)
        for index in range(8):
            ids, mask = apply_fim(ctx, rng=fim_rng(5, index), cfg=cfg, tokenizer=tokenizer)
            sentinel = np.isin(ids, (P, M, S))
            assert sentinel.sum() == 6 and not mask[sentinel].any()
            assert mask[(ids != PAD) & ~sentinel].all()  # EOTs and text stay in the loss


@pytest.mark.parametrize("variant", ["served", "paper"])
def test_spm_layouts(tokenizer, variant):
    cfg = FimConfig(mode="pretrain", rate=1.0, spm_rate=1.0, spm_variant=variant)
    doc = tokenizer.encode("abcdefghij klmnop qrstuv")
    sample, _ = fim_tokens(doc, fim_rng(0, 3), cfg, tokenizer)
    sample = sample.tolist()
    if variant == "served":  # S s P p M m
        assert sample[0] == S and sample.count(P) == 1 and sample.index(P) < sample.index(M)
    else:  # P S s M p m
        assert sample[:2] == [P, S] and sample.count(M) == 1
    assert restore_document(sample, tokenizer) == "abcdefghij klmnop qrstuv"


def test_deterministic_for_seed_and_index(tokenizer, corpus):
    ctx = _context(tokenizer, [corpus[0][:2000], corpus[1][:2000]], slack=10)
    for cfg in (FimConfig(mode="pretrain"), FimConfig(mode="finetune", rate=0.9)):
        a = [apply_fim(ctx, rng=fim_rng(9, i), cfg=cfg, tokenizer=tokenizer)[0] for i in range(10)]
        b = [apply_fim(ctx, rng=fim_rng(9, i), cfg=cfg, tokenizer=tokenizer)[0] for i in range(10)]
        assert all((x == y).all() for x, y in zip(a, b))
        assert len({x.tobytes() for x in a}) > 5


def test_rate_zero_is_identity(tokenizer, corpus):
    ctx = _context(tokenizer, [corpus[0][:500]], slack=3)
    ids, mask = apply_fim(ctx, rng=fim_rng(0, 0), cfg=FimConfig(rate=0.0), tokenizer=tokenizer)
    assert (ids == ctx).all() and mask.all()


def test_format_fim_prompt_layouts(tokenizer):
    pre, suf = "def f(x):\n    ", "\n    return y\n"
    p, s = tokenizer.encode(pre), tokenizer.encode(suf)
    assert format_fim_prompt(pre, suf, tokenizer=tokenizer) == [P, *p, S, *s, M]
    assert format_fim_prompt(pre, suf, "spm", "served", tokenizer) == [S, *s, P, *p, M]
    assert format_fim_prompt(pre, suf, "spm", "paper", tokenizer=tokenizer) == [P, S, *s, M, *p]
    middle = tokenizer.encode("y = x * 2")
    for order, variant in (("psm", "served"), ("spm", "served"), ("spm", "paper")):
        prompt = format_fim_prompt(pre, suf, order, variant, tokenizer=tokenizer)
        assert restore_document(prompt + middle, tokenizer) == pre + "y = x * 2" + suf
    with pytest.raises(ValueError, match="order"):
        format_fim_prompt(pre, suf, "pms", tokenizer=tokenizer)
    with pytest.raises(TypeError, match="tokenizer"):
        format_fim_prompt(pre, suf)
