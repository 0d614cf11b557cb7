"""Generation speed with the KV cache: new tokens/s at batch 1 and batch 8, refact_1_6b in bf16 on a GPU (or the tiny
shape on the CPU for scripts/gpu_check.sh --cpu). Random weights (speed does not depend on them), a random prompt of
--prompt tokens repeated over the batch, greedy, no stop token: every row generates exactly --new tokens, through
refact_train.model.generate (the path refact-generate and the evaluator use). Batch 8 must reproduce batch 1's tokens.

  python bench/generation_gpu.py [--prompt 512 --new 128 --batches 1,8] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="refact_1_6b")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--cpu-threads", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)
    from refact_train.model import generate

    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = build_model(args.model, dev, args.set, attention_backend=args.backend).to(dtype).eval()
    prompt = torch.randint(5, model.config.vocab_size, (args.prompt,)).tolist()
    generate(model, [prompt], 4, stop_token_ids=())  # warm-up: kernels, allocator
    rows, outputs = [], {}
    for batch in (int(b) for b in args.batches.split(",")):
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        outputs[batch] = generate(model, [prompt] * batch, args.new, stop_token_ids=())
        if dev.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        new_tokens = sum(len(o) for o in outputs[batch])
        row = {"batch": batch, "prompt_tokens": args.prompt, "new_tokens_per_row": args.new,
               "seconds": round(elapsed, 3),
               "new_tokens_per_s": round(new_tokens / elapsed, 1), "dtype": str(dtype).removeprefix("torch."),
               "model": args.model, "device": str(dev)}
        if dev.type == "cuda":
            row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
        rows.append(row)
        print(f"batch {batch}: {row['new_tokens_per_s']:,.1f} new tokens/s ({new_tokens} tokens in {elapsed:.2f} s)")
    first = outputs[min(outputs)][0]
    same = all(o == first for out in outputs.values() for o in out)
    print(f"every row of every batch generated the same tokens: {same}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "batched_equals_single": same}, indent=1))


if __name__ == "__main__":
    main()
