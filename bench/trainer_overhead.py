"""Trainer overhead: tokens/s of the real trainer (Trainer.run: data loading, schedules, early dropout, loss masks,
metrics, NaN checks) against a bare forward/backward/Lion-step loop on the same model, batches and threads, in the
same process, alternated so that machine noise hits both. Target: ratio >= 0.95.

python bench/trainer_overhead.py [--steps 12] [--rounds 2]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import train_config, trainer_corpus, trainer_metrics

WARMUP = 2


def overrides(data: Path, steps: int) -> list[str]:
    return [f"data.path={data}", f"train.max_steps={steps}", "checkpoint.every=100000",
            "metrics.wandb=false", "metrics.progress=false", "train.cpu_threads=1", "train.device=cpu",
            "data.seq_len=256", "data.fim.rate=0.5", "train.global_batch=8", "train.micro_batch=4", "resume=never"]


def trainer_rate(data: Path, steps: int) -> float:
    rows = trainer_metrics(overrides(data, steps))[WARMUP:]
    tokens = 8 * 256
    return tokens * len(rows) / sum(tokens / r["tokens_per_s"] for r in rows)


def bare_rate(data: Path, steps: int) -> float:
    from lion_pytorch import Lion

    from refact_train.models import build_model
    from refact_train.data import DataConfig, PackedSamples, StepLoader, layout_for
    from data_pipeline.tokenizer import load_tokenizer
    cfg = train_config([*overrides(data, steps), f"run_dir={tempfile.mkdtemp()}"])
    tok = load_tokenizer(data / "shards" / "tokenizer.json")
    cfg["model"]["vocab_size"] = tok.padded_vocab_size
    torch.set_num_threads(1)
    model = build_model(cfg["model"])
    opt = Lion(model.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1)
    samples = PackedSamples(DataConfig(path=str(data), seq_len=256, seed=1, fim={"mode": "pretrain", "rate": 0.5}), tok)
    loader = StepLoader(samples, layout_for(8, 4, 1, 0))
    all_batches = [loader.step_batches(s * 8) for s in range(steps)]  # loaded up front: the bare loop never waits
    model.train()
    times = []
    for batches in all_batches:
        t0 = time.perf_counter()
        for b in batches:
            logits = model(b.input_ids)
            loss = F.cross_entropy(logits.float().flatten(0, 1), b.labels.flatten()) / len(batches)
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    times = times[WARMUP:]
    return 8 * 256 * len(times) / sum(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    data = trainer_corpus()
    bare, trainer = [], []
    for i in range(args.rounds):  # alternate which goes first, so a drifting machine load favours neither
        order = [(bare, bare_rate), (trainer, trainer_rate)]
        for rates, measure in order[::-1] if i % 2 else order:
            rates.append(measure(data, args.steps))
    ratios = sorted(t / b for t, b in zip(trainer, bare))
    median = statistics.median(ratios)
    print(f"bare loop : rounds {', '.join(f'{x:,.0f}' for x in bare)} tokens/s")
    print(f"trainer   : rounds {', '.join(f'{x:,.0f}' for x in trainer)} tokens/s")
    print(f"trainer / bare per round: {', '.join(f'{r:.3f}' for r in ratios)}; median {median:.3f}   "
          f"target >= 0.95: {'MET' if median >= 0.95 else 'NOT MET'}")


if __name__ == "__main__":
    main()
