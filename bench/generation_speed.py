"""Evaluator generation speed on the tiny model: new tokens/s with batching (batch_size B) vs one prompt at a time.

Random weights (speed does not depend on them), the configs/model/tiny.yaml architecture, a BPE tokenizer trained on
the HumanEval prompts, and the first N HumanEval prompts; every prompt generates exactly --new tokens (no stop token),
through evals.generation.BatchGenerator (KV cache on). Greedy, so both runs must produce the same tokens (checked).
Usage: python bench/generation_speed.py [--prompts 16 --new 64 --batch 8 --threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch

from data_pipeline.tokenizer import train_bpe
from evals.generation import BatchGenerator, GenerationConfig
from evals.humaneval import load_problems
from refact_train.model import RefactForCausalLM
from refact_train.models import load_model_config

NO_STOP = [-1]  # an id no token has: every row runs the full --new tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    problems = load_problems()
    tok = train_bpe([p.prompt + p.canonical_solution for p in problems], vocab_size=4096)
    torch.manual_seed(0)
    cfg = load_model_config("tiny", vocab_size=tok.padded_vocab_size)
    model = RefactForCausalLM(cfg).eval()
    prompts = [tok.encode(p.prompt) for p in problems[:args.prompts]]
    BatchGenerator(model, GenerationConfig(batch_size=2, max_new_tokens=4)).run(prompts[:2], NO_STOP)  # warm-up
    rates, outputs = {}, {}
    for batch in (1, args.batch):
        gen = BatchGenerator(model, GenerationConfig(batch_size=batch, max_new_tokens=args.new))
        start = time.perf_counter()
        outputs[batch] = gen.run(prompts, NO_STOP, desc=f"batch {batch}")
        rates[batch] = gen.stats.new_tokens / (time.perf_counter() - start)
    assert outputs[1] == outputs[args.batch], "batched and unbatched greedy outputs differ"
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tiny model ({n_params / 1e6:.1f}M parameters, n_embd {cfg.n_embd}, layers {cfg.n_layer}); "
          f"{len(prompts)} HumanEval prompts ({min(map(len, prompts))}-{max(map(len, prompts))} tokens), "
          f"{args.new} new tokens each, torch threads {torch.get_num_threads()}")
    print(f"batch 1:  {rates[1]:.1f} new tokens/s")
    print(f"batch {args.batch}:  {rates[args.batch]:.1f} new tokens/s")
    print(f"ratio (batched / one at a time): {rates[args.batch] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
