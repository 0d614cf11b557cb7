"""Optimizers (Lion by default, AdamW as an option), parameter groups and learning-rate schedules."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from lion_pytorch import Lion
from torch import nn

from data_pipeline.config import config_from_dict


@dataclass(frozen=True)
class OptimConfig:
    name: str = "lion"                 # lion | adamw
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8                  # AdamW only
    weight_decay: float = 0.1
    no_decay: tuple[str, ...] = ("norm", "ln_", "wte", "embed", "bias")  # name substrings without weight decay
    decay_1d: bool = False             # decay 1-D tensors (norm weights, biases)?
    schedule: str = "cosine"           # cosine | linear | constant
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1          # final lr = lr * min_lr_ratio
    clip_grad: float = 1.0             # 0 disables clipping

    @classmethod
    def from_dict(cls, d: dict) -> "OptimConfig":
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
        if "no_decay" in d:
            d["no_decay"] = tuple(d["no_decay"])
        return config_from_dict(cls, d, "optim")


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Two groups: decayed matrices and the rest (norms, embeddings, biases: configurable by name and by rank)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = any(s in name for s in cfg.no_decay) or (p.ndim < 2 and not cfg.decay_1d)
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if cfg.name == "lion":
        # Lion's betas are set explicitly: (0.9, 0.99) from the Lion paper unless the config says otherwise.
        opt = Lion(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    elif cfg.name == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                                foreach=False)
    else:
        raise ValueError(f"optim.name={cfg.name!r}: expected 'lion' or 'adamw' (configs/optim/)")
    return make_skippable(opt)


def make_skippable(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Let the trainer veto one step (NaN/inf loss) even when an engine (DeepSpeed) calls `opt.step()` itself."""
    inner_step = opt.step
    opt.skip_next_step = False

    def step(*args, **kwargs):
        if opt.skip_next_step:
            opt.skip_next_step = False
            return None
        return inner_step(*args, **kwargs)
    opt.step = step
    return opt


def lr_at(step: int, max_steps: int, cfg: OptimConfig) -> float:
    """Warmup (linear from 0) then cosine or linear decay to lr * min_lr_ratio at max_steps."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, max_steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg.schedule == "linear":
        return cfg.lr - (cfg.lr - floor) * t
    raise ValueError(f"optim.schedule={cfg.schedule!r}: expected cosine, linear or constant")
