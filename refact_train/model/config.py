"""The model's shape and runtime knobs, as one typed dataclass (configs/model/*.yaml; loaded by refact_train.models)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

ATTENTION_BACKENDS = ("auto", "flash", "flex", "sdpa", "reference")


def swiglu_hidden(n_inner: int, multiple: int = 256) -> int:
    """The release's SwiGLU width from its "4*E" width n_inner: 256 * ceil(int(2 * n_inner / 3) / 256)
    (5632 for n_inner 8192, i.e. n_embd 2048)."""
    return multiple * math.ceil(int(2 * n_inner / 3) / multiple)


@dataclass
class RefactConfig:
    vocab_size: int = 49216
    n_embd: int = 2048
    n_head: int = 32
    n_layer: int = 32
    n_positions: int = 4096
    n_inner: int | None = None  # the release's "4*E" width (None: 4 * n_embd); the MLP is swiglu_hidden(n_inner) wide
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False
    ln_f_bias: bool = False  # one released revision's ln_f carries a bias
    dropout: float = 0.0  # initial runtime rate; early dropout changes it with model.set_dropout
    attention_backend: str = "auto"
    bos_token_id: int = 0
    eos_token_id: int = 0
    pad_token_id: int = 4

    def __post_init__(self) -> None:
        for key in ("vocab_size", "n_embd", "n_head", "n_layer", "n_positions", "n_inner"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"model config: {key} must be >= 1, got {getattr(self, key)}")
        # NaN fails every comparison, so it is refused too; each was found only at the first forward (or never:
        # dropout 1.0 trained on zeros, layer_norm_epsilon -1 gave NaN logits)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model config: dropout must be in [0, 1), got {self.dropout}")
        for key in ("layer_norm_epsilon", "initializer_range"):
            if not 0 <= getattr(self, key) < math.inf:
                raise ValueError(f"model config: {key} must be a finite number >= 0, got {getattr(self, key)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"model config: n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"model config: attention_backend {self.attention_backend!r} is not one of {ATTENTION_BACKENDS}"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_hidden(self) -> int:
        """The SwiGLU width, as the release's modeling code derives it from n_inner."""
        return swiglu_hidden(self.n_inner if self.n_inner is not None else 4 * self.n_embd)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
