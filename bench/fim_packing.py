"""FIM and shard-packing throughput on one core, each against a baseline measured in the same run.

1. `apply_fim` on packed contexts (pretrain and finetune modes, rate 0.5 and 1.0) vs the floor of any character-level
   FIM: decoding the context and re-encoding it (Megatron's `permute` does the same per document). Also prints how
   many GPUs at the release's ~7,750 tokens/s per GPU one loader core can feed.
2. `build_shards` (holdout, mixture, shuffle, shard files, manifest; workers=1) vs plain `encode_batch` of the same
   documents: the overhead of everything around tokenization.

    python bench/fim_packing.py [--files 80] [--contexts 40] [--ctx 4096]
"""
from __future__ import annotations

import argparse
import os
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core: compare like with like
os.environ.setdefault("RAYON_NUM_THREADS", "1")

from common import best_time  # noqa: E402
from data_pipeline.fim import FimConfig, apply_fim, fim_rng  # noqa: E402
from data_pipeline.mixing import HoldoutConfig, MixtureConfig  # noqa: E402
from data_pipeline.records import Document, write_documents  # noqa: E402
from data_pipeline.tokenization import build_shards  # noqa: E402
from data_pipeline.tokenizer import train_bpe  # noqa: E402

RELEASE_TOKENS_PER_GPU = 7750  # docs/refact_1_6b.md: 1.2e12 tokens / 28 days / 64 GPUs


def stdlib_texts(n: int) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.stat().st_size < 200_000)[:n]
    return [p.read_text(encoding="utf-8", errors="replace") for p in files]


def contexts(tok, texts: list[str], n: int, length: int) -> list[np.ndarray]:
    stream: list[int] = []
    for t in texts:
        stream += tok.encode(t) + [tok.eot_id]
    stream_arr = np.asarray(stream, dtype=np.int64)
    starts = np.random.default_rng(0).integers(0, len(stream_arr) - length, size=n)
    return [stream_arr[s:s + length] for s in starts]


def bench_fim(tok, ctxs: list[np.ndarray]) -> None:
    tokens = sum(len(c) for c in ctxs)
    base, _ = best_time(lambda: [tok.encode_bytes(tok.decode_bytes(c.tolist())) for c in ctxs])
    print(f"baseline decode+re-encode: {tokens / base:,.0f} tokens/s")
    for cfg in (FimConfig(mode="pretrain", rate=0.5), FimConfig(mode="pretrain", rate=1.0),
                FimConfig(mode="finetune", rate=0.9, empty_middle_rate=0.1, loss_on_sentinels=False)):
        t, _ = best_time(lambda: [apply_fim(c, rng=fim_rng(0, i), cfg=cfg, tokenizer=tok)
                                  for i, c in enumerate(ctxs)])
        rate = tokens / t
        print(f"apply_fim {cfg.mode:8s} rate {cfg.rate}: {rate:,.0f} tokens/s = {t / base:.2f}x the baseline time; "
              f"one core feeds {rate / RELEASE_TOKENS_PER_GPU:.0f} GPUs at {RELEASE_TOKENS_PER_GPU} tokens/s")


def bench_packing(tok, texts: list[str]) -> None:
    docs = [Document(id=f"d{i}", text=t, kind="code" if i % 2 else "text", lang="python", source="stdlib")
            for i, t in enumerate(texts)]
    with tempfile.TemporaryDirectory() as tmp:
        shard = Path(tmp) / "in.parquet"
        write_documents(shard, docs)
        n_tokens = sum(len(ids) for ids in tok.encode_batch(texts))
        base, _ = best_time(lambda: tok.encode_batch(texts), repeats=2)
        built, _ = best_time(lambda: build_shards([shard], Path(tmp) / "out", tok,
                                                  MixtureConfig(shares={"text": 0.5, "code": 0.5}),
                                                  HoldoutConfig(fraction=0.05), workers=1, progress=False), repeats=2)
    print(f"baseline encode_batch: {n_tokens / base:,.0f} tokens/s; build_shards: {n_tokens / built:,.0f} tokens/s "
          f"= {built / base:.2f}x the baseline time ({len(texts)} documents, {n_tokens:,} tokens)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=80)
    ap.add_argument("--contexts", type=int, default=40)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=4096)
    args = ap.parse_args()
    texts = stdlib_texts(args.files)
    tok = train_bpe(texts, vocab_size=args.vocab)
    print(f"{len(texts)} stdlib files, {sum(map(len, texts)):,} chars, BPE vocab {tok.vocab_size}")
    bench_fim(tok, contexts(tok, texts, args.contexts, args.ctx))
    bench_packing(tok, texts)


if __name__ == "__main__":
    main()
