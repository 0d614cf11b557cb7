"""ALiBi (Press et al. 2022) as the release uses it: per-head slopes, bias -m_h * (i - j) on causal scores."""
from __future__ import annotations

import math

import torch


def alibi_slopes(n_head: int) -> torch.Tensor:
    """Slopes m_h = 2^(-8h/n), h = 1..n with n = 2^floor(log2 H); for H not a power of two, the interleaved extra
    slopes 2^(-4h/n) for odd h = 1, 3, 5, ... (the original ALiBi code and the release's `get_alibi_biases`)."""
    n = 2 ** math.floor(math.log2(n_head))
    slopes = [2 ** (-8 * h / n) for h in range(1, n + 1)]
    extra = [2 ** (-4 * h / n) for h in range(1, 2 * (n_head - n), 2)]
    return torch.tensor(slopes + extra, dtype=torch.float32)


def alibi_bias(
    slopes: torch.Tensor,
    q_len: int,
    k_len: int,
    *,
    key_padding_mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Additive attention bias, [1 or B, H, q_len, k_len].

    The queries are the last `q_len` of `k_len` positions (decoding with a KV cache). Within a row this equals the
    release's `+m * j` form up to a constant, which softmax ignores; `-m * (i - j)` stays small, so bf16 keeps it exact.
    Masked entries (future keys, padding keys) are -inf; a padding query keeps its own key so its row is never empty.
    """
    device = slopes.device
    i = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    j = torch.arange(k_len, device=device)[None, :]
    distance = (i - j).to(torch.float32)
    bias = -slopes.to(torch.float32)[:, None, None] * distance  # [H, T, S]
    allowed = (j <= i)[None, None]  # [1, 1, T, S]
    if key_padding_mask is not None:
        allowed = allowed & (key_padding_mask.bool()[:, None, None, :] | (j == i)[None, None])
    bias = bias[None].masked_fill(~allowed, float("-inf"))
    return bias.to(dtype)
