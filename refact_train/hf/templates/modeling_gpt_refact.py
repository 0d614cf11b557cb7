"""GPTRefactForCausalLM: the Refact-1.6B architecture for `transformers` (written into HF exports by refact-train).

Multi-query attention (one shared K/V head, `kv` rows 0..63 = K, 64..127 = V), ALiBi, bias-free pre-norm LayerNorm,
SwiGLU MLP (`gate_up_proj` rows: gate first), untied lm_head. Works with the cache API of transformers 4.4x
(`past_key_values`) and 5.x (`cache`).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

try:
    from .configuration_gpt_refact import GPTRefactConfig
except ImportError:  # loaded as a top-level module
    from configuration_gpt_refact import GPTRefactConfig

_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def alibi_slopes(n_head, device=None):
    n = 2 ** math.floor(math.log2(n_head))
    slopes = [2 ** (-8 * h / n) for h in range(1, n + 1)]
    slopes += [2 ** (-4 * h / n) for h in range(1, 2 * (n_head - n), 2)]
    return torch.tensor(slopes, dtype=torch.float32, device=device)


def alibi_bias(slopes, q_len, k_len, key_padding_mask, dtype):
    """[1 or B, H, q_len, k_len]: -m * (i - j) on allowed keys, -inf on future and padding keys."""
    device = slopes.device
    i = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    j = torch.arange(k_len, device=device)[None, :]
    bias = -slopes[:, None, None] * (i - j).to(torch.float32)
    allowed = (j <= i)[None, None]
    if key_padding_mask is not None:
        allowed = allowed & (key_padding_mask.bool()[:, None, None, :] | (j == i)[None, None])
    return bias[None].masked_fill(~allowed, float("-inf")).to(dtype)


def swiglu_hidden(n_inner):
    """The release's rule: n_inner is the "4*E" width; the SwiGLU width is 2/3 of it, rounded up to 256."""
    return 256 * math.ceil(int(2 * n_inner / 3) / 256)


class GPTRefactAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.layer_idx = layer_idx
        self.q = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.kv = nn.Linear(config.n_embd, 2 * self.head_dim, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, slopes, key_padding_mask, cache):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k, v = self.kv(x).view(B, T, 1, 2 * self.head_dim).transpose(1, 2).split(self.head_dim, dim=-1)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        bias = alibi_bias(slopes, T, k.shape[2], key_padding_mask, q.dtype)
        S = k.shape[2]
        y = F.scaled_dot_product_attention(
            q, k.expand(B, self.n_head, S, self.head_dim), v.expand(B, self.n_head, S, self.head_dim), attn_mask=bias
        )
        return self.c_proj(y.transpose(1, 2).reshape(B, T, -1))


class GPTRefactMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.hidden = swiglu_hidden(config.n_inner if config.n_inner is not None else 4 * config.n_embd)
        self.gate_up_proj = nn.Linear(config.n_embd, 2 * self.hidden, bias=False)
        self.c_proj = nn.Linear(self.hidden, config.n_embd, bias=False)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).split(self.hidden, dim=-1)
        return self.c_proj(F.silu(gate) * up)


class GPTRefactBlock(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=False)
        self.attn = GPTRefactAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=False)
        self.mlp = GPTRefactMLP(config)

    def forward(self, x, slopes, key_padding_mask, cache):
        x = x + self.attn(self.ln_1(x), slopes, key_padding_mask, cache)
        return x + self.mlp(self.ln_2(x))


class GPTRefactPreTrainedModel(PreTrainedModel):
    config_class = GPTRefactConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = False
    _no_split_modules = ["GPTRefactBlock"]
    _supports_cache_class = True

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            if module.bias is not None:
                module.bias.data.zero_()
        if isinstance(module, (GPTRefactAttention, GPTRefactMLP)):
            module.c_proj.weight.data.normal_(mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))


class GPTRefactModel(GPTRefactPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.h = nn.ModuleList([GPTRefactBlock(config, i) for i in range(config.n_layer)])
        self.post_init()

    def get_input_embeddings(self):
        return self.wte

    def set_input_embeddings(self, value):
        self.wte = value

    def forward(self, input_ids, attention_mask=None, cache=None):
        key_padding_mask = None
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            key_padding_mask = attention_mask.bool()
        x = self.wte(input_ids)
        slopes = alibi_slopes(self.config.n_head, device=x.device)
        for block in self.h:
            x = block(x, slopes, key_padding_mask, cache)
        return x


class GPTRefactForCausalLM(GPTRefactPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.transformer = GPTRefactModel(config)
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.ln_f_bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.transformer.wte

    def set_input_embeddings(self, value):
        self.transformer.wte = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def _new_cache(self):
        try:
            return DynamicCache(config=self.config)
        except TypeError:  # transformers 4.x
            return DynamicCache()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        cache=None,
        past_key_values=None,
        labels=None,
        use_cache=None,
        logits_to_keep=0,
        return_dict=None,
        **kwargs,
    ):
        cache = cache if cache is not None else past_key_values
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = self._new_cache()
        if not use_cache:
            cache = None
        hidden = self.transformer(input_ids, attention_mask=attention_mask, cache=cache)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(self.ln_f(hidden))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: cache})
