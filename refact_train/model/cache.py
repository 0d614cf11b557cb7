"""Key/value cache for decoding: one preallocated buffer per layer, filled left to right."""
from __future__ import annotations

import torch


class KVCache:
    """Holds K and V ([B, 1, max_len, head_dim], one shared head) for every layer.

    Each layer's attention writes its new keys at positions [length, length + T); the model calls `advance(T)` once
    all layers have run, so every layer of one forward pass sees the same `length`.
    """

    def __init__(self, n_layer: int, batch_size: int, max_len: int, head_dim: int, *, dtype, device):
        shape = (batch_size, 1, max_len, head_dim)
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.max_len = max_len
        self.length = 0

    @classmethod
    def for_model(cls, model, batch_size: int, max_len: int) -> "KVCache":
        cfg = model.config
        param = next(model.parameters())
        return cls(cfg.n_layer, batch_size, max_len, cfg.head_dim, dtype=param.dtype, device=param.device)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} positions > max_len {self.max_len}; allocate a larger cache")
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n
