"""Build the model of a training config: from scratch, from an HF directory or from a trainer checkpoint; LoRA."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn


def model_config(model_cfg: dict):
    """The `model` section of a training config -> RefactConfig (unknown keys are an error naming the key)."""
    from refact_train.model import RefactConfig
    return RefactConfig.from_dict(dict(model_cfg))


def build_model(model_cfg: dict) -> nn.Module:
    from refact_train.model import RefactForCausalLM
    return RefactForCausalLM(model_config(model_cfg))


def is_hf_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def init_model(model_cfg: dict, init_from: str | None, log=print) -> nn.Module:
    """A fresh model, or weights from `init_from` (an HF dir, or a trainer checkpoint / run dir: weights only)."""
    if not init_from:
        return build_model(model_cfg)
    path = Path(init_from)
    if is_hf_dir(path):
        from refact_train.hf import load_hf_checkpoint
        model, _ = load_hf_checkpoint(str(path), dtype=torch.float32, device="cpu")
        log(f"[init] weights from HF directory {path}", file=sys.stderr)
        return model
    from refact_train.checkpoint import load_model_from_checkpoint
    model, _ = load_model_from_checkpoint(path)
    log(f"[init] weights from trainer checkpoint {path}", file=sys.stderr)
    return model
