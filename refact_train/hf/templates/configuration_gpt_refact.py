"""GPTRefactConfig: configuration of the Refact-1.6B architecture (written into HF exports by refact-train)."""
from transformers import PretrainedConfig


class GPTRefactConfig(PretrainedConfig):
    model_type = "gpt_refact"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]
    attribute_map = {
        "hidden_size": "n_embd",
        "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
    }

    def __init__(
        self,
        vocab_size=49216,
        n_positions=4096,
        n_embd=2048,
        n_layer=32,
        n_head=32,
        n_inner=None,
        layer_norm_epsilon=1e-5,
        initializer_range=0.02,
        multi_query=True,
        ln_f_bias=False,
        use_cache=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=4,
        attention_softmax_in_fp32=True,
        scale_attention_softmax_in_fp32=True,
        attention_bias_in_fp32=True,
        tie_word_embeddings=False,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.n_positions = n_positions
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_inner = n_inner
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.multi_query = multi_query
        self.ln_f_bias = ln_f_bias
        self.use_cache = use_cache
        self.attention_softmax_in_fp32 = attention_softmax_in_fp32
        self.scale_attention_softmax_in_fp32 = scale_attention_softmax_in_fp32
        self.attention_bias_in_fp32 = attention_bias_in_fp32
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
