"""The model's shape and runtime knobs, as one typed dataclass loaded from `configs/model/*.yaml`."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data_pipeline.config_check import config_from_dict

ATTENTION_BACKENDS = ("auto", "flash", "flex", "sdpa", "reference")


def swiglu_hidden(n_embd: int, multiple: int = 256) -> int:
    """MLP width of the release: 256 * ceil(int(2 * 4 * n_embd / 3) / 256) (5632 for n_embd 2048)."""
    return multiple * math.ceil(int(2 * 4 * n_embd / 3) / multiple)


@dataclass
class RefactConfig:
    vocab_size: int = 49216
    n_embd: int = 2048
    n_head: int = 32
    n_layer: int = 32
    n_positions: int = 4096
    n_inner: int | None = None  # None: the release's SwiGLU rule (swiglu_hidden)
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
        return self.n_inner if self.n_inner is not None else swiglu_hidden(self.n_embd)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RefactConfig":
        return config_from_dict(cls, values, "model config")


def load_model_config(name_or_path: str | Path, **overrides: Any) -> RefactConfig:
    """`tiny`, `refact_1_6b` (files in configs/model/) or the path of a YAML file with RefactConfig keys."""
    from omegaconf import OmegaConf

    from refact_train.paths import config_dir

    path = Path(name_or_path)
    if not path.suffix:
        path = Path(config_dir()) / "model" / f"{name_or_path}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (Path(config_dir()) / "model").glob("*.yaml"))
        raise FileNotFoundError(f"model config {name_or_path!r}: no file {path}; available: {available}")
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    values.update(overrides)
    return RefactConfig.from_dict(values)
