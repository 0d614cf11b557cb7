"""LoRA fine-tuning with peft (release defaults: r 16, alpha 32, dropout 0.01 on q, kv, c_proj, gate_up_proj),
and merging the adapters back into plain weights for export."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from data_pipeline.config import config_from_dict

PEFT_PREFIX = "base_model.model."
# The layers of RefactForCausalLM that peft can put adapters on (LayerNorms it cannot); a target names one of them,
# alone (every layer) or with its path (`h.0.attn.q`: that layer only).
LORA_LAYERS = ("q", "kv", "c_proj", "gate_up_proj", "wte", "lm_head")


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.01
    target_modules: tuple[str, ...] = ("q", "kv", "c_proj", "gate_up_proj")

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora: r must be >= 1, alpha > 0 and dropout in [0, 1), got r={self.r}, "
                             f"alpha={self.alpha}, dropout={self.dropout}")
        unknown = [t for t in self.target_modules if t.rsplit(".", 1)[-1] not in LORA_LAYERS]
        if unknown or not self.target_modules:  # peft's error came with a traceback, after the model was built
            raise ValueError(f"lora.target_modules: {unknown or 'empty'}; each names one of the model's layers "
                             f"{list(LORA_LAYERS)}, alone or with its path (h.0.attn.q)")

    @classmethod
    def from_dict(cls, d: dict) -> "LoraConfig":
        d = dict(d)
        if isinstance(d.get("target_modules"), (list, tuple)):  # a bare string is refused, not split into letters
            d["target_modules"] = tuple(d["target_modules"])
        return config_from_dict(cls, d, "lora")


def apply_lora(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Wrap `model` with peft LoRA adapters; only adapter weights stay trainable."""
    import peft  # here, not at the top: peft pulls in transformers (~8 s) and only LoRA runs need it
    pcfg = peft.LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                           target_modules=list(cfg.target_modules), bias="none")
    return peft.get_peft_model(model, pcfg)


def merge_lora_state(sd: dict, lora: dict) -> dict:
    """A peft LoRA state dict -> the plain model's state dict with W' = W + (alpha/r)·B·A (an embedding's: its
    transpose) (pure; no peft needed)."""
    cfg = LoraConfig.from_dict(lora)
    scale = cfg.alpha / cfg.r
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if ".lora_" in key:  # adapters (lora_A / lora_B, lora_embedding_A / _B): merged into their base weight below
            continue
        name = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        if ".base_layer." in name:
            stem = key.replace(".base_layer.weight", "")
            adapters = {k[len(stem) + 1:].split(".")[0]: v for k, v in sd.items() if k.startswith(stem + ".lora_")}
            # Linear: lora_A [r, in], lora_B [out, r]; Embedding: lora_embedding_A [r, rows], lora_embedding_B [dim, r]
            if "lora_embedding_A" in adapters and "lora_embedding_B" in adapters:
                delta = (adapters["lora_embedding_B"].float() @ adapters["lora_embedding_A"].float()).T
            elif "lora_A" in adapters and "lora_B" in adapters:
                delta = adapters["lora_B"].float() @ adapters["lora_A"].float()
            else:
                raise KeyError(f"{stem}: a LoRA base_layer weight without its A and B adapters ({sorted(adapters)})")
            value = value + (scale * delta).to(value.dtype)
            name = name.replace(".base_layer.", ".")
        out[name] = value
    return out
