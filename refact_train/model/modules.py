"""The blocks of the Refact architecture; attribute names match the released state dict (docs/refact_1_6b.md)."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from refact_train.model.attention import attention
from refact_train.model.cache import KVCache
from refact_train.model.config import RefactConfig


class MultiQueryAttention(nn.Module):
    """32 query heads, one shared K/V head (`kv` rows 0..D-1 are K, D..2D-1 are V), no biases, ALiBi."""

    def __init__(self, cfg: RefactConfig, layer_idx: int):
        super().__init__()
        self.n_head, self.head_dim, self.layer_idx = cfg.n_head, cfg.head_dim, layer_idx
        self.backend = cfg.attention_backend
        self.q = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.kv = nn.Linear(cfg.n_embd, 2 * cfg.head_dim, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout_p = cfg.dropout

    def forward(self, x, slopes, key_padding_mask=None, cache: KVCache | None = None):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k, v = self.kv(x).view(B, T, 1, 2 * self.head_dim).transpose(1, 2).split(self.head_dim, dim=-1)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        p = self.dropout_p if self.training else 0.0
        y = attention(q, k, v, slopes, dropout_p=p, key_padding_mask=key_padding_mask, backend=self.backend)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # not (B, T, -1): B or T may be 0
        return F.dropout(self.c_proj(y), p=p, training=self.training)


class SwiGLU(nn.Module):
    """`c_proj(silu(gate(x)) * up(x))` with gate and up fused in `gate_up_proj` (gate rows first)."""

    def __init__(self, cfg: RefactConfig):
        super().__init__()
        self.hidden = cfg.mlp_hidden
        self.gate_up_proj = nn.Linear(cfg.n_embd, 2 * self.hidden, bias=False)
        self.c_proj = nn.Linear(self.hidden, cfg.n_embd, bias=False)
        self.dropout_p = cfg.dropout

    def forward(self, x):
        gate, up = self.gate_up_proj(x).split(self.hidden, dim=-1)
        return F.dropout(self.c_proj(F.silu(gate) * up), p=self.dropout_p, training=self.training)


class RefactBlock(nn.Module):
    def __init__(self, cfg: RefactConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, bias=False)
        self.attn = MultiQueryAttention(cfg, layer_idx)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, bias=False)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, slopes, key_padding_mask=None, cache: KVCache | None = None):
        x = x + self.attn(self.ln_1(x), slopes, key_padding_mask, cache)
        return x + self.mlp(self.ln_2(x))
