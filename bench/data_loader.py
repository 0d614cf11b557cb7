"""Data loader throughput (packed windows + context-level FIM) in tokens/s on ONE core, against what the trainer
consumes: the tiny model trained on this machine, and the release's 1.6B on an A5000 (about 7,750 tokens/s per GPU,
docs/refact_1_6b.md). Target: >= 200k tokens/s per core.

python bench/data_loader.py [--seq-len 2048] [--seconds 10]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import trainer_corpus, trainer_metrics
from refact_train.data import DataConfig, PackedSamples, StepLoader, layout_for

A5000_TOKENS_PER_S = 1.2e12 / (28 * 86400) / 64


def loader_rate(data: Path, seq_len: int, fim_rate: float, seconds: float) -> float:
    fim = {"mode": "pretrain", "rate": fim_rate} if fim_rate > 0 else {}
    samples = PackedSamples(DataConfig(path=str(data), seq_len=seq_len, seed=1, fim=fim))
    loader = StepLoader(samples, layout_for(8, 8, 1, 0))
    start, n, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        loader.step_batches(start)
        start += 8
        n += 8 * seq_len
    return n / (time.perf_counter() - t0)


def tiny_train_rate(data: Path, steps: int = 6) -> float:
    rows = trainer_metrics([f"data.path={data}", f"train.max_steps={steps}", "checkpoint.every=1000",
                            "metrics.wandb=false", "metrics.progress=false", "train.cpu_threads=1", "train.device=cpu",
                            "data.seq_len=256", "data.fim.rate=0.5"])
    return sum(r["tokens_per_s"] for r in rows[2:]) / len(rows[2:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = trainer_corpus()
    plain = loader_rate(data, args.seq_len, 0.0, args.seconds)
    fim = loader_rate(data, args.seq_len, 0.5, args.seconds)
    tiny = tiny_train_rate(data)
    print(f"loader, packed windows only      : {plain:12,.0f} tokens/s on 1 core")
    print(f"loader, + FIM rate 0.5 (pretrain): {fim:12,.0f} tokens/s on 1 core   target >= 200,000: "
          f"{'MET' if fim >= 200_000 else 'NOT MET'}")
    print(f"trainer consumption, tiny model (CPU, 1 thread): {tiny:10,.0f} tokens/s -> loader/consumption = "
          f"{fim / tiny:.1f}x")
    print(f"trainer consumption, 1.6B on one A5000 (release): {A5000_TOKENS_PER_S:9,.0f} tokens/s -> "
          f"loader/consumption = {fim / A5000_TOKENS_PER_S:.1f}x")


if __name__ == "__main__":
    main()
