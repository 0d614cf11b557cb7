"""Peak memory per GPU of refact_1_6b at 4096 context under each backend, COMPUTED (no GPU on the dev box),
against the 24 GB of the A5000 the release was trained on. The parameter count comes from the real model built on
the meta device; bytes per parameter follow each backend's layout (fp32 master weights, bf16 compute, Lion's one
fp32 state). Activations: micro-batch 1, flash attention (O(T) memory), with and without activation checkpointing.

python bench/memory_1_6b.py [--gpus 8 64] [--micro-batch 1]
"""
from __future__ import annotations

import argparse

import torch

GB = 1e9
A5000 = 24 * 2 ** 30 / GB          # the A5000 has 24 GiB = 25.8 GB
CUDA_RESERVE = 1.5                  # CUDA context + allocator fragmentation, GB (rule of thumb)


def model_shape():
    from refact_train.model import RefactForCausalLM
    from refact_train.models import load_model_config
    cfg = load_model_config("refact_1_6b")
    with torch.device("meta"):
        model = RefactForCausalLM(cfg)
    return cfg, model.num_parameters()


# Weights + gradients + optimizer state per GPU, in bytes, of n parameters over `world` GPUs; layer = one block's
# parameters. Lion keeps one fp32 momentum (4 bytes/param).
BACKENDS = {
    # fp32 weights, fp32 grads, Lion momentum; + two DDP gradient buckets
    "ddp (fp32 weights, bf16 autocast)": lambda n, world, layer: n * (4 + 4 + 4) + 2 * 25e6 * 4,
    # fp32 params, grads, momentum: all sharded; + two blocks unsharded in bf16 (prefetch), params + grads
    "fsdp2 (bf16 params, fp32 reduce)": lambda n, world, layer: n * (4 + 4 + 4) / world + 2 * layer * 2 * 2,
    # bf16 params + grads; fp32 master + momentum sharded
    "zero1 (bf16 params)": lambda n, world, layer: n * (2 + 2) + n * (4 + 4) / world,
    # bf16 params; bf16 grads, fp32 master + momentum sharded; reduce + allgather buckets of 5e8 bf16 elements
    "zero2 (bf16 params)": lambda n, world, layer: n * 2 + n * 2 / world + n * (4 + 4) / world + 2 * 5e8 * 2,
    "zero3 (bf16 params)": lambda n, world, layer: n * (2 + 2 + 4 + 4) / world + 2 * layer * 2 * 2,
}


def activations_gb(cfg, T: int, micro: int, checkpointing: bool) -> float:
    d, L, V, H = cfg.n_embd, cfg.n_layer, cfg.vocab_size, cfg.mlp_hidden
    # one block's saved tensors in bf16 with flash attention: ln_1/ln_2 outputs, q, kv, attention out, c_proj in,
    # gate_up out (2H), silu(gate) and product (H each), residuals: about 12·d + 4·H values per token
    per_block = micro * T * (12 * d + 4 * H) * 2
    logits = micro * T * V * (2 + 4 + 4)                # bf16 logits, fp32 upcast for the loss, its gradient
    if checkpointing:
        return (L * micro * T * d * 2 + per_block + logits) / GB   # block inputs kept, one block recomputed
    return (L * per_block + logits) / GB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--context", type=int, default=4096)
    args = ap.parse_args()
    cfg, n = model_shape()
    layer_params = (n - 2 * cfg.vocab_size * cfg.n_embd) // cfg.n_layer
    print(f"refact_1_6b: {n:,} parameters; context {args.context}, micro-batch {args.micro_batch}; "
          f"A5000 = {A5000:.1f} GB, minus {CUDA_RESERVE} GB CUDA reserve")
    for ckpt in (True, False):
        act = activations_gb(cfg, args.context, args.micro_batch, ckpt)
        print(f"\nactivation checkpointing {'ON ' if ckpt else 'OFF'}: activations + logits {act:.1f} GB")
        print(f"{'backend':36s}" + "".join(f"{f'{g} GPUs: total':>18s}{'fits':>6s}" for g in args.gpus))
        for b in BACKENDS:
            row = f"{b:36s}"
            for g in args.gpus:
                total = BACKENDS[b](n, g, layer_params) / GB + act + CUDA_RESERVE
                row += f"{total:15.1f} GB{'yes' if total <= A5000 else 'NO':>6s}"
            print(row)


if __name__ == "__main__":
    main()
