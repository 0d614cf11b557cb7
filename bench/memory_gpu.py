"""MEASURED peak GPU memory of fine-tuning refact_1_6b at 4096 context (bench/memory_1_6b.py computes the same on
paper): a LoRA fine-tune and a full fine-tune on one GPU, and one rank of a 2-way FSDP2 run simulated on one GPU.

Each configuration runs in its own process: the trainer's building blocks (RefactForCausalLM with fp32 weights, bf16
autocast, refact_train.lora's peft adapters r 16, Lion from refact_train.optim, gradient clipping), micro-batch 1,
--steps optimizer steps (the first allocates Lion's state, so the peak of the later ones is the steady state), then
torch.cuda.max_memory_allocated / max_memory_reserved. "Fits an A5000" means reserved + --context-gib (CUDA context)
<= 24 GiB.

2-way sharding on ONE GPU: rank 0 of a world of 2 under torch's "fake" process group (collectives are no-ops; the
gathered and reduce-scattered buffers are still allocated), with the project's FSDP2 backend
(refact_train.backends.fsdp2, bf16 params, fp32 reduce). reshard_after_forward=true is FSDP2's ZeRO-3-like default;
reshard_after_forward=false keeps the bf16 params gathered from forward to backward, which is ZeRO-2's memory layout.
DeepSpeed's own ZeRO-2 is not simulated: deepspeed is not on the GPU box (and NCCL refuses two ranks on one GPU).
Numerics under the fake group are meaningless; only memory is read.

  python bench/memory_gpu.py [--configs lora,lora_no_ckpt,full,fsdp2_2way,fsdp2_2way_zero2] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import build_model

CONFIGS = {  # name: (lora, activation checkpointing, world size under the fake group, reshard_after_forward)
    "lora": (True, True, 1, None),
    "lora_no_ckpt": (True, False, 1, None),
    "full": (False, True, 1, None),
    "fsdp2_2way": (False, True, 2, True),
    "fsdp2_2way_zero2": (False, True, 2, False),
}
A5000_GIB = 24.0


def measure(args, name: str) -> dict:
    from refact_train.optim import OptimConfig, build_optimizer

    lora, ckpt, world, reshard = CONFIGS[name]
    dev = torch.device(args.device)
    model = build_model(args.model, dev, args.set, n_positions=args.seq, attention_backend=args.backend)
    model.set_activation_checkpointing(ckpt)
    n_params = model.num_parameters()  # before LoRA adds its adapters
    module = model
    if lora:
        from refact_train.lora import LoraConfig, apply_lora
        module = apply_lora(model, LoraConfig(enabled=True))
    optim_cfg = OptimConfig(name="lion")
    if world > 1:
        import torch.distributed as dist
        from torch.testing._internal.distributed.fake_pg import FakeStore

        from refact_train.backends.base import DistEnv
        from refact_train.backends.fsdp2 import FSDP2Backend
        dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world)
        backend = FSDP2Backend(DistEnv(0, world, 0, dev), {"bf16_params": True, "reshard_after_forward": reshard})
        backend.prepare(module, lambda m: build_optimizer(m, optim_cfg), 1, 1, 1.0)
        module, opt = backend.model, backend.optimizer
    else:
        opt = build_optimizer(module, optim_cfg)
    module.train()
    # this rank's share: a sharded (DTensor) parameter holds 1/world of the elements
    trainable = sum((p.to_local() if hasattr(p, "to_local") else p).numel()
                    for p in module.parameters() if p.requires_grad)
    ids = torch.randint(0, model.config.vocab_size, (1, args.seq + 1), device=dev)
    row = {"config": name, "lora": lora, "activation_checkpointing": ckpt, "world_size": world,
           "reshard_after_forward": reshard, "seq": args.seq, "micro_batch": 1, "params": n_params,
           "trainable_params_this_rank": trainable, "device": str(dev)}
    t0 = time.perf_counter()
    try:
        for _ in range(args.steps):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                logits = module(ids[:, :-1])
            F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten()).backward()
            torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.grad is not None], 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
    except torch.cuda.OutOfMemoryError as e:
        return {**row, "error": f"out of memory: {str(e).splitlines()[0]}"}
    row["seconds"] = round(time.perf_counter() - t0, 2)
    if dev.type == "cuda":
        alloc = torch.cuda.max_memory_allocated() / 2 ** 30
        reserved = torch.cuda.max_memory_reserved() / 2 ** 30
        row.update(peak_allocated_gib=round(alloc, 2), peak_reserved_gib=round(reserved, 2),
                   fits_a5000_24gib=reserved + args.context_gib <= A5000_GIB)
    else:
        row.update(peak_allocated_gib=None, peak_reserved_gib=None, fits_a5000_24gib=None)  # no allocator stats
    if world > 1:
        torch.distributed.destroy_process_group()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one configuration, its row as JSON
    ap.add_argument("--model", default="refact_1_6b")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backend", default="auto", help="attention backend")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--context-gib", type=float, default=0.6, help="CUDA context and driver, not in torch's stats")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per configuration")
    ap.add_argument("--cpu-threads", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)
    if args.one:
        print("ROW " + json.dumps(measure(args, args.one)))
        return
    rows = []
    child = ["--model", args.model, "--device", args.device, "--backend", args.backend, "--seq", str(args.seq),
             "--steps", str(args.steps), "--context-gib", str(args.context_gib),
             "--cpu-threads", str(args.cpu_threads), "--set", *args.set]
    for name in args.configs.split(","):
        t0 = time.perf_counter()
        if not args.device.startswith("cuda"):  # no allocator statistics to keep apart: one process is enough
            rows.append({**measure(args, name), "wall_s": round(time.perf_counter() - t0, 1)})
            print(f"{name:18s} ran on {args.device} (no peak-memory statistics there)", flush=True)
            continue
        try:
            proc = subprocess.run([sys.executable, __file__, "--one", name, *child], capture_output=True,
                                  text=True, timeout=args.timeout)
            found = [x for x in proc.stdout.splitlines() if x.startswith("ROW ")]
            row = json.loads(found[-1][4:]) if found else {"config": name, "error": proc.stderr[-1500:]}
        except subprocess.TimeoutExpired:
            row = {"config": name, "error": f"timed out after {args.timeout:.0f} s"}
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        peak = row.get("peak_reserved_gib")
        print(f"{name:18s} " + (f"error: {row['error'][-300:]}" if "error" in row else
                                f"peak allocated {row['peak_allocated_gib']} GiB, reserved {peak} GiB, "
                                f"fits a 24 GiB A5000: {row['fits_a5000_24gib']}"), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
