"""Full (unsharded, name-keyed) model and optimizer state for single, DDP and FSDP2 alike.

Saving full state keyed by parameter name is what makes a checkpoint resumable on another process count and
loadable by any backend and by `refact-export`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions, get_model_state_dict, get_optimizer_state_dict, set_model_state_dict, set_optimizer_state_dict,
)

_SAVE = StateDictOptions(full_state_dict=True, cpu_offload=True)
_LOAD = StateDictOptions(full_state_dict=True)


def full_model_state(model: nn.Module) -> dict:
    return get_model_state_dict(model, options=_SAVE)


def full_optim_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return get_optimizer_state_dict(model, optimizer, options=_SAVE)


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer | None, ckpt_dir: Path) -> None:
    # mmap: every rank reads the same files through the page cache instead of holding its own copy.
    model_sd = torch.load(ckpt_dir / "model.pt", map_location="cpu", mmap=True, weights_only=True)
    set_model_state_dict(model, model_sd, options=_LOAD)
    if optimizer is not None:
        if (ckpt_dir / "optimizer.pt").is_file():
            optim_sd = torch.load(ckpt_dir / "optimizer.pt", map_location="cpu", mmap=True, weights_only=True)
        else:  # a DeepSpeed checkpoint: its name-keyed full optimizer state
            optim_sd = from_name_keyed(model, optimizer, torch.load(ckpt_dir / "optimizer_full.pt",
                                                                    map_location="cpu", weights_only=True))
        set_optimizer_state_dict(model, optimizer, optim_sd, options=_LOAD)


def from_name_keyed(model: nn.Module, optimizer: torch.optim.Optimizer, named: dict) -> dict:
    """{param name: {state key: tensor}} (+ "__step__") -> a full optimizer state dict for this optimizer."""
    template = get_optimizer_state_dict(model, optimizer, options=_SAVE)  # param_groups keyed by parameter name
    step = named.pop("__step__", None)
    state = {}
    for name, entry in named.items():
        state[name] = dict(entry)
        if step is not None:
            state[name]["step"] = step.clone()
    return {"state": state, "param_groups": template["param_groups"]}
