"""Causal multi-query attention with ALiBi behind one function, several backends.

q: [B, H, T, D]; k, v: [B, 1, S, D] (one shared K/V head); the T queries are the last T of the S positions.
Backends: "flash" (flash-attn, CUDA, `alibi_slopes`), "flex" (FlexAttention with an ALiBi score_mod; compile it for
speed; no dropout, no CPU backward), "sdpa" (torch SDPA with a float ALiBi bias, K/V expanded to the query heads),
"reference" (plain matmuls, fp32 softmax: the ground truth the tests compare against). "auto" picks flash when it
can, else sdpa.
"""
from __future__ import annotations

import functools
import importlib.util
import logging

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from refact_train.model.alibi import alibi_bias

log = logging.getLogger(__name__)


@functools.cache
def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def resolve_backend(backend: str, q: torch.Tensor, dropout_p: float, key_padding_mask: torch.Tensor | None) -> str:
    """The backend that will really run, given what the inputs allow."""
    flash_ok = q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and key_padding_mask is None
    if backend == "auto":
        return "flash" if flash_ok and flash_attn_available() else "sdpa"
    if backend == "flash" and not (flash_ok and flash_attn_available()):
        _warn_once(f"flash-attn cannot run here (installed: {flash_attn_available()}, device {q.device}, "
                   f"dtype {q.dtype}, padding mask: {key_padding_mask is not None}); using sdpa")
        return "sdpa"
    if backend == "flex" and (dropout_p > 0 or key_padding_mask is not None):
        _warn_once("flex attention has no dropout or padding mask here; using sdpa for those calls")
        return "sdpa"
    if backend == "flex" and not q.is_cuda and torch.is_grad_enabled() and q.requires_grad:
        # FlexAttention has no CPU backward: it refused even an eval forward outside torch.no_grad()
        _warn_once(f"flex attention has no backward on {q.device}; using sdpa where gradients are tracked")
        return "sdpa"
    return backend


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    *,
    dropout_p: float = 0.0,
    key_padding_mask: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Returns [B, H, T, D]."""
    backend = resolve_backend(backend, q, dropout_p, key_padding_mask)
    if backend == "flash":
        return _flash(q, k, v, slopes, dropout_p)
    if backend == "flex":
        return _flex(q, k, v, slopes)
    if backend == "sdpa":
        return _sdpa(q, k, v, slopes, dropout_p, key_padding_mask)
    if backend == "reference":
        return reference_attention(q, k, v, slopes, dropout_p=dropout_p, key_padding_mask=key_padding_mask)
    raise ValueError(f"unknown attention backend {backend!r}")


def reference_attention(q, k, v, slopes, *, dropout_p=0.0, key_padding_mask=None):
    scale = q.shape[-1] ** -0.5
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale  # k broadcasts over the H query heads
    scores = scores + alibi_bias(slopes, q.shape[2], k.shape[2], key_padding_mask=key_padding_mask)
    probs = torch.softmax(scores, dim=-1)
    if dropout_p > 0:
        probs = F.dropout(probs, p=dropout_p)
    return torch.matmul(probs, v.float()).to(q.dtype)


@functools.lru_cache(maxsize=8)
def _causal_alibi_bias(slopes: tuple[float, ...], q_len: int, k_len: int, dtype: torch.dtype, device: str):
    # Same for every layer and every step of a given shape: built once, not n_layer times per forward.
    return alibi_bias(torch.tensor(slopes, device=device), q_len, k_len, dtype=dtype)


def _sdpa(q, k, v, slopes, dropout_p, key_padding_mask):
    if key_padding_mask is None and not torch.compiler.is_compiling():  # compiled: the bias is fused into the graph
        bias = _causal_alibi_bias(tuple(slopes.tolist()), q.shape[2], k.shape[2], q.dtype, str(q.device))
    else:
        bias = alibi_bias(slopes, q.shape[2], k.shape[2], key_padding_mask=key_padding_mask, dtype=q.dtype)
    # One K/V head broadcast as a zero-stride view, not enable_gqa: with a float mask, enable_gqa sends CUDA to the
    # math kernel (a T x T score tensor per layer: out of memory at 4096); expanded, the memory-efficient one runs.
    k, v = k.expand(-1, q.shape[1], -1, -1), v.expand(-1, q.shape[1], -1, -1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)


def _flash(q, k, v, slopes, dropout_p):
    from flash_attn import flash_attn_func

    # flash-attn takes [B, T, H, D]; with causal=True and T < S it aligns queries to the end (the KV-cache case),
    # and its ALiBi bias is -slope * |i - j|, the same as ours on the causal part.
    out = flash_attn_func(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
        dropout_p=dropout_p, causal=True, alibi_slopes=slopes.to(device=q.device, dtype=torch.float32),
    )
    return out.transpose(1, 2)


@functools.cache
def _flex_kernel(on_cuda: bool):
    # Uncompiled FlexAttention is a slow reference path; compiled, it is a fused Triton kernel.
    return torch.compile(flex_attention, dynamic=False) if on_cuda else flex_attention


@functools.lru_cache(maxsize=16)
def _causal_block_mask(q_len: int, k_len: int, device: str):
    offset = k_len - q_len
    return create_block_mask(lambda b, h, qi, ki: qi + offset >= ki, None, None, q_len, k_len, device=device)


def _flex(q, k, v, slopes):
    q_len, k_len = q.shape[2], k.shape[2]
    offset = k_len - q_len
    slopes = slopes.to(device=q.device, dtype=torch.float32)

    def alibi_score(score, b, h, q_idx, kv_idx):
        return score - slopes[h] * (q_idx + offset - kv_idx)

    block_mask = _causal_block_mask(q_len, k_len, str(q.device))
    return _flex_kernel(q.is_cuda)(q, k, v, score_mod=alibi_score, block_mask=block_mask, enable_gqa=True)
