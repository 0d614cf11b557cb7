"""Training throughput and MFU of one configuration: refact_1_6b at 4096 context in bf16 on a GPU (issue 2 target:
MFU >= 50% on H100/H200), or the tiny shape on the CPU (scripts/gpu_check.sh --cpu keeps this script working).

One step is what the trainer does: forward under autocast, fp32 cross-entropy, backward (over --grad-accum
micro-batches), gradient clipping at 1.0 and a Lion step built by refact_train.optim. MFU uses the trainer's own
accounting (refact_train.metrics: 6N + 12·layers·width·context FLOPs per token, PaLM appendix B; peak bf16 FLOP/s from
the GPU's name), so the trainer's logged MFU and this bench can be compared directly.
`--compile` wraps the model in torch.compile, exactly what `train.compile=true` does; `flex` compiles its
attention kernel in any case. Out of memory is a result (written as the row's error), not a crash.

  python bench/mfu_gpu.py [--backends sdpa,flex,flash] [--compile-modes off,on] [--seq 4096 --micro-batch 2]
  python bench/mfu_gpu.py --device cpu --model tiny --set n_embd=64 n_layer=2 --seq 64 --peak-flops 1e11
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import build_model


def run(args, backend: str, compile_model: bool) -> dict:
    from refact_train.metrics import detect_peak_flops, flops_per_token
    from refact_train.optim import OptimConfig, build_optimizer

    dev = torch.device(args.device)
    row = {"backend": backend, "compile": compile_model, "model": args.model, "seq": args.seq,
           "micro_batch": args.micro_batch, "grad_accum": args.grad_accum, "activation_checkpointing": args.ckpt,
           "dropout": args.dropout, "device": str(dev), "precision": args.precision}
    if backend == "flash" and importlib.util.find_spec("flash_attn") is None:
        return {**row, "skipped": "flash-attn is not installed"}
    model = build_model(args.model, dev, args.set, n_positions=args.seq, attention_backend=backend)
    cfg = model.config
    model.set_activation_checkpointing(args.ckpt)
    model.set_dropout(args.dropout)
    model.train()
    opt = build_optimizer(model, OptimConfig(name="lion", lr=1e-4))
    fwd = torch.compile(model) if compile_model else model
    amp = args.precision == "bf16"
    ids = torch.randint(0, cfg.vocab_size, (args.grad_accum, args.micro_batch, args.seq + 1), device=dev)

    def step():
        for m in range(args.grad_accum):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                logits = fwd(ids[m, :, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), ids[m, :, 1:].flatten()) / args.grad_accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    try:
        t0 = time.perf_counter()
        for _ in range(args.warmup):  # the first steps compile (torch.compile, flex, Triton autotuning)
            step()
        sync()
        row["warmup_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        sync()
        elapsed = time.perf_counter() - t0
    except torch.cuda.OutOfMemoryError as e:
        return {**row, "error": f"out of memory: {str(e).splitlines()[0]}"}
    except NotImplementedError as e:  # e.g. FlexAttention has no CPU backward
        return {**row, "error": f"NotImplementedError: {str(e).splitlines()[0]}"}
    tokens_per_s = args.grad_accum * args.micro_batch * args.seq * args.steps / elapsed
    n = model.num_parameters()
    peak = detect_peak_flops(args.peak_flops)
    fpt = flops_per_token(n, cfg.n_layer, cfg.n_embd, args.seq)
    row.update(params=n, steps=args.steps, step_s=round(elapsed / args.steps, 4), tokens_per_s=round(tokens_per_s, 1),
               flops_per_token=fpt, peak_flops=peak, mfu=(fpt * tokens_per_s / peak) if peak else None,
               loss=float(loss.detach()) * args.grad_accum)
    if dev.type == "cuda":
        row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="refact_1_6b", help="configs/model/NAME.yaml")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="model config overrides")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=["bf16", "fp32"], default=None, help="default: bf16 on cuda, fp32 on cpu")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--backends", default="sdpa,flex,flash")
    ap.add_argument("--compile-modes", default="off,on", help="off: eager model; on: torch.compile(model)")
    ap.add_argument("--ckpt", action="store_true", help="activation checkpointing")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--peak-flops", type=float, default=None, help="default: from the GPU's name; needed on CPU")
    ap.add_argument("--cpu-threads", type=int, default=0)
    ap.add_argument("--json", type=Path, help="append the rows to this JSON list")
    args = ap.parse_args()
    args.precision = args.precision or ("bf16" if args.device.startswith("cuda") else "fp32")
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"{where}, torch {torch.__version__}, {args.model}, seq {args.seq}, micro-batch {args.micro_batch}")
    rows = []
    for backend in args.backends.split(","):
        for mode in args.compile_modes.split(","):
            row = run(args, backend, mode == "on")
            rows.append(row)
            if "tokens_per_s" in row:
                mfu = f"MFU {100 * row['mfu']:.1f}%" if row["mfu"] is not None else "MFU n/a (no peak FLOP/s)"
                print(f"{backend:6s} compile={mode:3s}: {row['tokens_per_s']:,.0f} tokens/s, {mfu}, "
                      f"step {row['step_s']:.3f} s, warm-up {row['warmup_s']:.1f} s, "
                      f"peak memory {row.get('peak_memory_gib', 'n/a')} GiB")
            else:
                print(f"{backend:6s} compile={mode:3s}: {row.get('skipped') or row.get('error')}")
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    if args.json:
        previous = json.loads(args.json.read_text()) if args.json.is_file() else []
        args.json.write_text(json.dumps(previous + rows, indent=1))


if __name__ == "__main__":
    main()
