"""Optimizers (Lion by default, AdamW as an option), parameter groups and learning-rate schedules."""
from __future__ import annotations

import dataclasses
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

    def __post_init__(self) -> None:
        # Lion asserted on a negative lr; a NaN lr, a negative weight decay or min_lr_ratio, beta2=1 and a NaN or
        # negative clip_grad trained silently (the last two without clipping); min_lr_ratio < 0 ends in gradient ascent.
        for key, least in (("lr", None), ("eps", 0.0), ("weight_decay", 0.0), ("clip_grad", 0.0)):
            v = getattr(self, key)
            if not math.isfinite(v) or v < (least or 0.0) or (least is None and v == 0):
                raise ValueError(f"optim.{key} must be {'> 0' if least is None else '>= 0'} and finite, got {v}")
        numbers = all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in self.betas)
        if len(self.betas) != 2 or not numbers or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"optim.min_lr_ratio must be within [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        for key, allowed in (("name", ("lion", "adamw")), ("schedule", ("cosine", "linear", "constant"))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"optim.{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if not all(isinstance(s, str) for s in self.no_decay):
            raise ValueError(f"optim.no_decay must be a list of parameter-name substrings, got {list(self.no_decay)}")

    @classmethod
    def from_dict(cls, d: dict) -> "OptimConfig":
        """Types checked by config_from_dict first (a bare string for no_decay would be split into letters)."""
        cfg = config_from_dict(cls, d, "optim")
        return dataclasses.replace(cfg, betas=tuple(float(b) for b in cfg.betas), no_decay=tuple(cfg.no_decay))


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
