"""RefactForCausalLM: embedding -> blocks -> bias-free ln_f -> untied lm_head (docs/refact_1_6b.md)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from refact_train.model.alibi import alibi_slopes
from refact_train.model.cache import KVCache
from refact_train.model.config import RefactConfig
from refact_train.model.modules import RefactBlock


def check_inputs(input_ids, attention_mask, cache: KVCache | None, rows: int) -> torch.Tensor | None:
    """The key padding mask ([B, S] bool, None when nothing is padded), after one-line checks of what the caller
    gave: a 1-D prompt failed as "not enough values to unpack", a mask of another length or rank broadcast silently
    (a [B, 1] mask over a cached prefix masked every earlier key) and an HF-style additive mask (0 real, -inf pad)
    was read inverted."""
    integer = isinstance(input_ids, torch.Tensor) and input_ids.dtype in (torch.long, torch.int)
    if not integer or input_ids.dim() != 2:
        hint = " (one sequence: ids[None])" if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 1 else ""
        raise ValueError(f"input_ids must be a [batch, time] tensor of int64 or int32 token ids, got "
                         f"{_describe(input_ids)}{hint}")
    if cache is not None and not isinstance(cache, KVCache):  # HF habits (cache=True, a tuple of past key/values)
        raise ValueError(f"cache must be a KVCache (KVCache.for_model(model, batch_size, max_len)) or None, got "
                         f"{type(cache).__name__}")
    cached = cache.length if cache is not None else 0
    batch, length = input_ids.shape[0], input_ids.shape[1] + cached
    cache_padding = cache.key_padding_mask if cache is not None else None
    if attention_mask is None and cache_padding is not None:  # the new tokens attended to the padding keys, silently
        raise ValueError(f"this KV cache holds left padding (it was filled with an attention_mask holding 0s): pass "
                         f"attention_mask [batch, cached + new positions] = [{batch}, {length}] on every forward "
                         f"through it")
    if attention_mask is not None and (not isinstance(attention_mask, torch.Tensor)
                                       or tuple(attention_mask.shape) != (batch, length)):
        raise ValueError(f"attention_mask must be [batch, cached + new positions] = [{batch}, {length}], got "
                         f"{_describe(attention_mask)}")
    # Ids past the embedding were "index out of range in self" on CPU and a device-side assert on CUDA, which kills
    # the process and poisons its CUDA context (torch._assert_async would too). Naming the id needs a host read: on
    # CPU about 7 us, 0.07% of a tiny model's [8, 256] forward; on an accelerator it is done only where this forward
    # reads the host anyway (a mask) or runs without gradients (generation and evals read every step), never in a
    # training step, where a sync would stall the GPU. Compiled, a host read would break the graph.
    checks = {}
    if input_ids.numel() and not torch.compiler.is_compiling() and (
            input_ids.device.type == "cpu" or attention_mask is not None or not torch.is_grad_enabled()):
        low, high = torch.aminmax(input_ids)
        checks["ids"] = (low >= 0) & (high < rows)
    if attention_mask is not None:
        real = attention_mask == 1
        checks["binary"] = (real | (attention_mask == 0)).all()
        checks["unpadded"] = real.all()
        if cached:  # the cached keys were computed under the mask they were filled with
            before = real[:, :cached]
            checks["history"] = (before == cache_padding).all() if cache_padding is not None else before.all()
    ok = dict(zip(checks, torch.stack(list(checks.values())).tolist())) if checks else {}  # one host read
    if not ok.get("ids", True):
        row, col = ((input_ids < 0) | (input_ids >= rows)).nonzero()[0].tolist()
        raise ValueError(f"input_ids: token id {int(input_ids[row, col])} at [{row}, {col}] is outside the model's "
                         f"{rows} embedding rows [0, {rows}) (is the tokenizer the model's?)")
    if not ok.get("binary", True):
        raise ValueError("attention_mask must hold only 1 (real token) and 0 (padding); an additive mask "
                         "(0 / -inf) is not one")
    if not ok.get("history", True):
        raise ValueError(f"attention_mask: its first {cached} columns must repeat the mask this KV cache was filled "
                         f"with (the cached keys were computed under it)")
    return None if attention_mask is None or ok["unpadded"] else real


def _describe(value) -> str:
    return f"{list(value.shape)} {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__


class RefactForCausalLM(nn.Module):
    def __init__(self, config: RefactConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.transformer.h = nn.ModuleList(RefactBlock(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.ln_f_bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        # Slopes are a function of n_head, not learned state: kept out of the state dict.
        self.register_buffer("alibi_slopes", alibi_slopes(config.n_head), persistent=False)
        self.dropout_rate = config.dropout
        self.activation_checkpointing = False
        if self.lm_head.weight.device.type != "meta":
            self.reset_parameters()

    # ---- set-up --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The release's init: normal(0, 0.02); residual output projections std 0.02 / sqrt(2 * n_layer)."""
        std = self.config.initializer_range
        residual_std = std / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=residual_std if name.endswith("c_proj") else std)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.alibi_slopes.copy_(alibi_slopes(self.config.n_head))

    def _apply(self, fn, recurse=True):
        # The slopes stay float32 whatever dtype the weights move to: model.to(bfloat16) rounded 2^(-h/4) by up to
        # 0.2%, so a trainer checkpoint loaded in bf16 attended unlike the same weights loaded from an HF directory.
        super()._apply(fn, recurse)
        self.alibi_slopes = alibi_slopes(self.config.n_head).to(self.alibi_slopes.device)
        return self

    def set_dropout(self, p: float) -> None:
        """One runtime rate for embedding, attention-probability and residual dropout (early dropout flips it)."""
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.dropout_rate = float(p)
        for module in self.modules():
            if hasattr(module, "dropout_p"):
                module.dropout_p = float(p)

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        self.activation_checkpointing = enabled

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    # ---- forward -------------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        last_token_only: bool = False,
    ) -> torch.Tensor:
        """input_ids [B, T] -> logits [B, T, vocab] ([B, 1, vocab] with last_token_only).

        attention_mask [B, S] of 1 (real token) and 0 (left padding) covers the cached positions and the new ones.
        Once a cache holds padding, every forward through it needs the mask, repeating the one it was filled with.
        """
        key_padding_mask = check_inputs(input_ids, attention_mask, cache, self.config.vocab_size)
        x = F.dropout(self.transformer.wte(input_ids), p=self.dropout_rate, training=self.training)
        slopes = self.alibi_slopes
        for block in self.transformer.h:
            if self.activation_checkpointing and self.training and cache is None:
                x = checkpoint(block, x, slopes, key_padding_mask, use_reentrant=False)
            else:
                x = block(x, slopes, key_padding_mask, cache)
        if cache is not None:
            cache.advance(input_ids.shape[1], key_padding_mask)
        if last_token_only:
            x = x[:, -1:]
        return self.lm_head(self.ln_f(x))
