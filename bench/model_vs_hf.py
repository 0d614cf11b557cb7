"""CPU: forward+backward tokens/s of our model vs the same weights through the exported HF modeling code.

Both run in this process, on the same shapes and inputs, interleaved, so machine noise hits both alike.
Target (issue 2): ours >= 1.3x. Usage: python bench/model_vs_hf.py [--n-embd 512 --layers 4 --seq 512 --batch 4]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch


def step_time(model, ids, loss_fn) -> float:
    t0 = time.perf_counter()
    loss_fn(model, ids).backward()
    seconds = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-embd", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also time ours under torch.compile (train.compile=true)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 is steadier on a shared machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    from refact_train.hf import save_hf_checkpoint
    from refact_train.model import RefactConfig, RefactForCausalLM

    torch.manual_seed(0)
    cfg = RefactConfig(vocab_size=args.vocab, n_embd=args.n_embd, n_head=args.heads, n_layer=args.layers,
                       n_positions=args.seq)
    ours = RefactForCausalLM(cfg).train()
    with tempfile.TemporaryDirectory() as d:
        save_hf_checkpoint(ours, d)
        hf = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True).train()
    ids = torch.randint(0, args.vocab, (args.batch, args.seq))

    def ours_loss(m, x):
        return m(x).float().logsumexp(-1).mean()

    def hf_loss(m, x):
        return m(x, use_cache=False).logits.float().logsumexp(-1).mean()

    candidates = {"ours": (ours, ours_loss), "HF export": (hf, hf_loss)}
    if args.compile:
        candidates["ours compiled"] = (torch.compile(ours), ours_loss)
    for model, loss_fn in candidates.values():  # warm-up (and compilation)
        step_time(model, ids, loss_fn)
    times = {name: [] for name in candidates}
    for _ in range(args.repeats):  # interleaved rounds: noise hits every candidate alike
        for name, (model, loss_fn) in candidates.items():
            times[name].append(step_time(model, ids, loss_fn))
    tokens = args.batch * args.seq
    tps = {name: tokens / sorted(t)[len(t) // 2] for name, t in times.items()}
    ours_tps, hf_tps = tps["ours"], tps["HF export"]
    print(f"shape: n_embd {args.n_embd}, heads {args.heads}, layers {args.layers}, vocab {args.vocab}, "
          f"batch {args.batch} x seq {args.seq}, fp32, {torch.get_num_threads()} threads")
    print(f"ours fwd+bwd: {ours_tps:,.0f} tokens/s")
    print(f"HF export fwd+bwd: {hf_tps:,.0f} tokens/s")
    print(f"ratio ours/HF: {ours_tps / hf_tps:.2f}x (target >= 1.3x)")
    if "ours compiled" in tps:
        print(f"ours under torch.compile fwd+bwd: {tps['ours compiled']:,.0f} tokens/s; "
              f"ratio compiled/HF: {tps['ours compiled'] / hf_tps:.2f}x")


if __name__ == "__main__":
    main()
