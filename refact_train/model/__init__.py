"""The Refact-1.6B architecture: MQA + ALiBi, bias-free LayerNorm, SwiGLU, untied head."""
from refact_train.model.alibi import alibi_bias, alibi_slopes
from refact_train.model.attention import attention, reference_attention
from refact_train.model.cache import KVCache
from refact_train.model.config import RefactConfig, swiglu_hidden
from refact_train.model.generation import generate, sample_next
from refact_train.model.model import RefactForCausalLM

__all__ = [
    "KVCache", "RefactConfig", "RefactForCausalLM", "alibi_bias", "alibi_slopes", "attention", "generate",
    "reference_attention", "sample_next", "swiglu_hidden",
]
