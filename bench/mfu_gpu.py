"""GPU: training throughput and MFU of the refact_1_6b shape at 4096 context in bf16 (issue 2 target: MFU >= 50% on H100).

MFU = (6 * N_params + 12 * n_layer * n_embd * seq) * tokens/s / peak bf16 FLOP/s  (PaLM's accounting: the attention term
counts the full T x T score and value products). The baseline in the same run is the `sdpa` backend (float ALiBi bias);
the candidates are `flex` (FlexAttention + ALiBi score_mod, compiled) and `flash` (flash-attn `alibi_slopes`) when installed.
Usage (on a GPU machine): python bench/mfu_gpu.py [--seq 4096 --micro-batch 4 --steps 10 --backends sdpa,flex,flash]
"""
from __future__ import annotations

import argparse
import importlib.util
import time

import torch

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "A5000": 111e12}  # dense, no sparsity


def peak_flops() -> float:
    name = torch.cuda.get_device_name()
    for key, value in PEAK_BF16.items():
        if key in name:
            return value
    raise SystemExit(f"unknown GPU {name!r}: add its bf16 peak to PEAK_BF16")


def run(backend: str, seq: int, micro_batch: int, steps: int, compile_model: bool) -> float:
    from lion_pytorch import Lion

    from refact_train.model import RefactForCausalLM
    from refact_train.models import load_model_config

    cfg = load_model_config("refact_1_6b", n_positions=seq, attention_backend=backend)
    torch.manual_seed(0)
    model = RefactForCausalLM(cfg).cuda()
    model.set_activation_checkpointing(False)
    opt = Lion(model.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1)
    fwd = torch.compile(model) if compile_model else model
    ids = torch.randint(0, cfg.vocab_size, (micro_batch, seq + 1), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = fwd(ids[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):  # warm-up, compilation
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    tokens_per_s = micro_batch * seq * steps / (time.perf_counter() - t0)
    n = model.num_parameters()
    flops_per_token = 6 * n + 12 * cfg.n_layer * cfg.n_embd * seq
    mfu = flops_per_token * tokens_per_s / peak_flops()
    print(f"{backend:6s} compile={compile_model}: {tokens_per_s:,.0f} tokens/s, MFU {100 * mfu:.1f}%, "
          f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    del model, opt
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return tokens_per_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--backends", default="sdpa,flex,flash")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs CUDA")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, seq {args.seq}, micro-batch {args.micro_batch}")
    results = {}
    for backend in args.backends.split(","):
        if backend == "flash" and importlib.util.find_spec("flash_attn") is None:
            print("flash  skipped: flash-attn is not installed")
            continue
        results[backend] = run(backend, args.seq, args.micro_batch, args.steps, not args.no_compile)
    if "sdpa" in results:
        for backend, tps in results.items():
            print(f"ratio {backend}/sdpa: {tps / results['sdpa']:.2f}x")


if __name__ == "__main__":
    main()
