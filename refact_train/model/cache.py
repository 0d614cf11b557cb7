"""Key/value cache for decoding: one preallocated buffer per layer, filled left to right."""
from __future__ import annotations

from numbers import Integral

import torch


class KVCache:
    """Holds K and V ([B, 1, max_len, head_dim], one shared head) for every layer.

    Each layer's attention writes its new keys at positions [length, length + T); the model calls `advance(T)` once
    all layers have run, so every layer of one forward pass sees the same `length`.
    """

    def __init__(self, n_layer: int, batch_size: int, max_len: int, head_dim: int, *, dtype, device):
        # a negative max_len was torch.empty's "negative dimension", a float its unpack error, 0 layers an IndexError
        # at the first forward
        for name, value, least in (("n_layer", n_layer, 1), ("batch_size", batch_size, 0), ("max_len", max_len, 0),
                                   ("head_dim", head_dim, 1)):
            if not (isinstance(value, Integral) and not isinstance(value, bool) and value >= least):
                raise ValueError(f"KVCache: {name} must be an integer >= {least}, got {value!r}")
        shape = (batch_size, 1, max_len, head_dim)
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.max_len = max_len
        self.length = 0
        self.key_padding_mask: torch.Tensor | None = None  # [B, length] bool, False at padding; None: none padded

    @classmethod
    def for_model(cls, model, batch_size: int, max_len: int) -> "KVCache":
        cfg = model.config
        param = next(model.parameters())
        return cls(cfg.n_layer, batch_size, max_len, cfg.head_dim, dtype=param.dtype, device=param.device)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(layer, k)
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} positions > max_len {self.max_len}; allocate a larger cache")
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, n: int, key_padding_mask: torch.Tensor | None = None) -> None:
        """`key_padding_mask`: the forward's mask over all length + n positions; a later forward must repeat it."""
        self.length += n
        self.key_padding_mask = key_padding_mask

    def _check(self, layer: int, k: torch.Tensor) -> None:
        """A cache reused for another batch size, model or dtype failed deep in attention ("mat1 and mat2 shapes
        cannot be multiplied", "expanded size", a dtype clash) or, for a smaller cache, with an IndexError."""
        buf = self.k[0]
        holds = f"[batch {buf.shape[0]}, head_dim {buf.shape[3]}] {buf.dtype} on {buf.device}, {len(self.k)} layers"
        given = f"[batch {k.shape[0]}, head_dim {k.shape[3]}] {k.dtype} on {k.device}, layer {layer}"
        if layer >= len(self.k) or (k.shape[0], k.shape[3], k.dtype, k.device) != (
                buf.shape[0], buf.shape[3], buf.dtype, buf.device):
            raise ValueError(f"KV cache holds {holds}; this forward gives {given}: allocate a cache for this model "
                             f"and batch with KVCache.for_model(model, batch_size, max_len)")
