"""Trainer overhead: tokens/s of the real trainer (Trainer.run: data loading, schedules, early dropout, loss masks,
metrics, NaN checks) against a bare forward/backward/Lion-step loop on the same model, batches and threads, in the
same process, alternated so that machine noise hits both. Target: ratio >= 0.95.

python bench/trainer_overhead.py [--steps 12] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "trainer"))
from trainer_corpus import write_corpus  # noqa: E402

WARMUP = 2


def overrides(data: Path, run: Path, steps: int) -> list[str]:
    return [f"data.path={data}", f"run_dir={run}", f"train.max_steps={steps}", "checkpoint.every=100000",
            "metrics.wandb=false", "metrics.progress=false", "train.cpu_threads=1", "train.device=cpu",
            "data.seq_len=256", "data.fim.rate=0.5", "train.global_batch=8", "train.micro_batch=4", "resume=never"]


def compose(ov: list[str]) -> dict:
    from hydra import compose as c, initialize_config_dir
    from omegaconf import OmegaConf

    from data_pipeline.config import config_dir
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return OmegaConf.to_container(c("train", overrides=ov), resolve=True)


def trainer_rate(data: Path, steps: int) -> float:
    from refact_train.trainer import train
    run = Path(tempfile.mkdtemp()) / "run"
    train(compose(overrides(data, run, steps)))
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][WARMUP:]
    tokens = 8 * 256
    return tokens * len(rows) / sum(tokens / r["tokens_per_s"] for r in rows)


def bare_rate(data: Path, steps: int) -> float:
    from lion_pytorch import Lion

    from refact_train.models import build_model
    from refact_train.data import DataConfig, PackedSamples, StepLoader, layout_for
    from data_pipeline.tokenizer import load_tokenizer
    cfg = compose(overrides(data, Path(tempfile.mkdtemp()), steps))
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
    data = write_corpus(Path(tempfile.mkdtemp()) / "corpus")
    bare, trainer = [], []
    for i in range(args.rounds):  # alternate which goes first, so a drifting machine load favours neither
        if i % 2:
            trainer.append(trainer_rate(data, args.steps))
            bare.append(bare_rate(data, args.steps))
        else:
            bare.append(bare_rate(data, args.steps))
            trainer.append(trainer_rate(data, args.steps))
    ratios = sorted(t / b for t, b in zip(trainer, bare))
    median = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:][:2]) / 2
    print(f"bare loop : rounds {', '.join(f'{x:,.0f}' for x in bare)} tokens/s")
    print(f"trainer   : rounds {', '.join(f'{x:,.0f}' for x in trainer)} tokens/s")
    print(f"trainer / bare per round: {', '.join(f'{r:.3f}' for r in ratios)}; median {median:.3f}   "
          f"target >= 0.95: {'MET' if median >= 0.95 else 'NOT MET'}")


if __name__ == "__main__":
    main()
