"""Generation speed of the tiny model (configs/model/tiny.yaml, random weights): new tokens/s, two ways to compare.

--compare batch (default): the evaluator's BatchGenerator (KV cache on) on the first N HumanEval prompts, with a BPE
    tokenizer trained on them, batch B vs one prompt at a time; every prompt generates exactly --new tokens.
--compare cache: refact_train.model.generate on one random prompt of --context tokens, with the KV cache vs without
    (target issue 2: >= 5x; the prefill is timed in both).
Greedy, so both sides of a comparison must produce the same tokens (checked).
Usage: python bench/generation_speed.py [--compare batch|cache] [--prompts 16 --batch 8 --context 512 --new 64
    --threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch

from common import build_model
from data_pipeline.tokenizer import train_bpe
from evals.generation import BatchGenerator, GenerationConfig
from evals.humaneval import load_problems
from refact_train.model import generate

NO_STOP = [-1]  # an id no token has: every row runs the full --new tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", choices=("batch", "cache"), default="batch")
    ap.add_argument("--prompts", type=int, default=16, help="batch: HumanEval prompts")
    ap.add_argument("--batch", type=int, default=8, help="batch: the batch size compared with 1")
    ap.add_argument("--context", type=int, default=512, help="cache: prompt tokens")
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = {}  # label -> (new tokens/s, outputs); the baseline first
    if args.compare == "batch":
        problems = load_problems()
        tok = train_bpe([p.prompt + p.canonical_solution for p in problems], vocab_size=4096)
        model = build_model("tiny", "cpu", vocab_size=tok.padded_vocab_size).eval()
        prompts = [tok.encode(p.prompt) for p in problems[:args.prompts]]
        BatchGenerator(model, GenerationConfig(batch_size=2, max_new_tokens=4)).run(prompts[:2], NO_STOP)  # warm-up
        for batch in (1, args.batch):
            gen = BatchGenerator(model, GenerationConfig(batch_size=batch, max_new_tokens=args.new))
            start = time.perf_counter()
            outputs = gen.run(prompts, NO_STOP, desc=f"batch {batch}")
            runs[f"batch {batch}"] = (gen.stats.new_tokens / (time.perf_counter() - start), outputs)
        workload = f"{len(prompts)} HumanEval prompts ({min(map(len, prompts))}-{max(map(len, prompts))} tokens)"
    else:
        model = build_model("tiny", "cpu", n_positions=args.context + args.new).eval()
        prompt = torch.randint(5, model.config.vocab_size, (args.context,)).tolist()
        generate(model, [prompt], 2, stop_token_ids=())  # warm-up
        for label, use_cache in (("without cache", False), ("with KV cache", True)):
            start = time.perf_counter()
            outputs = generate(model, [prompt], args.new, stop_token_ids=(), use_cache=use_cache)
            runs[label] = (args.new / (time.perf_counter() - start), outputs)
        workload = f"one random prompt of {args.context} tokens"
    (base, (base_rate, base_out)), (other, (rate, out)) = runs.items()
    assert base_out == out, f"greedy outputs differ: {base} vs {other}"
    cfg = model.config
    print(f"tiny model ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, n_embd {cfg.n_embd}, "
          f"layers {cfg.n_layer}, vocab {cfg.vocab_size}); {workload}, {args.new} new tokens each, fp32, "
          f"torch threads {torch.get_num_threads()}")
    for label, (tokens_per_s, _) in runs.items():
        print(f"{label}: {tokens_per_s:,.1f} new tokens/s")
    target = " (target >= 5x)" if args.compare == "cache" else ""
    print(f"ratio ({other} / {base}): {rate / base_rate:.2f}x{target}")


if __name__ == "__main__":
    main()
