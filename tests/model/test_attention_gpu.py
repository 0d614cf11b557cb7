"""On CUDA in bf16: every attention backend against `reference` (forward and gradients), flex compiled (attention()
compiles it on CUDA), flash when installed, the memory-efficient SDPA kernel for our ALiBi mask, and KV-cache generation
(skipped without a GPU)."""
import importlib.util

import pytest
import torch

from refact_train.model import RefactConfig, RefactForCausalLM, alibi_slopes, attention, generate, reference_attention

pytestmark = pytest.mark.gpu
BACKENDS = ["sdpa", "flex", "flash"]


def qkv(B=2, H=8, T=256, S=256, D=64, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    shapes = ((B, H, T, D), (B, 1, S, D), (B, 1, S, D))
    return [torch.randn(s, generator=g, device="cuda").to(torch.bfloat16).requires_grad_() for s in shapes]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def need(backend: str) -> None:
    if backend == "flash" and importlib.util.find_spec("flash_attn") is None:
        pytest.skip("flash-attn is not installed")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T,S", [(256, 256), (16, 272)])  # training; decoding with a KV cache (queries at the end)
def test_backend_matches_reference_in_bf16(backend, T, S):
    need(backend)
    q, k, v = qkv(T=T, S=S)
    slopes = alibi_slopes(8).cuda()
    out = attention(q, k, v, slopes, backend=backend)
    assert out.dtype == torch.bfloat16
    # the ground truth in fp32 on the same (bf16-valued) inputs
    qf, kf, vf = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = reference_attention(qf, kf, vf, slopes)
    assert rel_err(out, ref) < 2e-2  # bf16 rounding is ~4e-3; a wrong bias is O(1)
    grad_out = torch.randn_like(ref)
    grads = torch.autograd.grad(out, (q, k, v), grad_out.to(out.dtype))
    ref_grads = torch.autograd.grad(ref, (qf, kf, vf), grad_out)
    for name, g, r in zip("qkv", grads, ref_grads):
        assert rel_err(g, r) < 5e-2, f"{backend}: gradient of {name}"


def test_sdpa_runs_on_the_memory_efficient_kernel():
    """With the float ALiBi mask, SDPA must not need its math kernel (a T x T tensor per layer: OOM at 4096)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = qkv(T=512, S=512)
    slopes = alibi_slopes(8).cuda()
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
        out = attention(q, k, v, slopes, backend="sdpa")
        out.sum().backward()
    assert torch.isfinite(k.grad).all()


def test_kv_cache_generation_on_cuda():
    torch.manual_seed(0)
    cfg = RefactConfig(vocab_size=128, n_embd=64, n_head=4, n_layer=2, n_positions=256, attention_backend="sdpa")
    model = RefactForCausalLM(cfg).cuda()
    prompts = [[5, 6, 7], [9, 10, 11, 12, 13, 14, 15], [20]]
    cached = generate(model, prompts, 40, stop_token_ids=())
    assert cached == generate(model, prompts, 40, stop_token_ids=(), use_cache=False)
    assert cached == generate(model.cpu(), prompts, 40, stop_token_ids=())  # fp32: CUDA decodes what the CPU does
    bf16 = generate(model.cuda().to(torch.bfloat16), prompts, 40, stop_token_ids=())
    assert [len(r) for r in bf16] == [40, 40, 40]
