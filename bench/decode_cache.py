"""CPU: decoding tokens/s with the KV cache vs without, at 512 tokens of context (target issue 2: >= 5x).

Same model, same prompt, same process; greedy, so both produce the same tokens (checked).
Usage: python bench/decode_cache.py [--context 512 --new 32 --n-embd 256 --layers 4]
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    args = ap.parse_args()

    from refact_train.model import RefactConfig, RefactForCausalLM, generate

    torch.manual_seed(0)
    cfg = RefactConfig(vocab_size=args.vocab, n_embd=args.n_embd, n_head=args.heads, n_layer=args.layers,
                       n_positions=args.context + args.new)
    model = RefactForCausalLM(cfg).eval()
    prompt = torch.randint(5, args.vocab, (args.context,)).tolist()
    generate(model, [prompt], 2, stop_token_ids=())  # warm-up
    results = {}
    for use_cache in (True, False):
        t0 = time.perf_counter()
        out = generate(model, [prompt], args.new, stop_token_ids=(), use_cache=use_cache)
        results[use_cache] = (time.perf_counter() - t0, out)
    assert results[True][1] == results[False][1], "cached and uncached greedy outputs differ"
    cached = args.new / results[True][0]
    uncached = args.new / results[False][0]
    print(f"model: n_embd {args.n_embd}, layers {args.layers}, vocab {args.vocab}; context {args.context}, "
          f"{args.new} new tokens, fp32, {torch.get_num_threads()} threads (prefill included in both)")
    print(f"with KV cache: {cached:,.1f} tokens/s")
    print(f"without cache: {uncached:,.1f} tokens/s")
    print(f"ratio: {cached / uncached:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
