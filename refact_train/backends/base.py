"""The backend interface, the process-group set-up shared by all backends, and full state.

Single, DDP and FSDP2 save the full (unsharded) model and optimizer state keyed by parameter name: that makes a
checkpoint resumable on another process count and loadable by any backend and by `refact-export`.
"""
from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions, get_model_state_dict, get_optimizer_state_dict, set_model_state_dict, set_optimizer_state_dict,
)

_SAVE = StateDictOptions(full_state_dict=True, cpu_offload=True)
_LOAD = StateDictOptions(full_state_dict=True)


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env(device: str = "auto") -> DistEnv:
    """Rank and device from torchrun's environment (one process without it); cuda:LOCAL_RANK when available."""
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(f"cuda:{local}") if device == "cuda" else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return DistEnv(rank, world, local, dev)


def init_process_group(env: DistEnv) -> None:
    """gloo on CPU, nccl on GPU; a one-process group when not launched by torchrun (DDP/FSDP/DeepSpeed need one)."""
    if dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    os.environ.setdefault("RANK", str(env.rank))
    os.environ.setdefault("WORLD_SIZE", str(env.world_size))
    backend = "nccl" if env.device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)


class Backend:
    """What the trainer needs from a backend. `model` is what to call for the forward pass, `module` the bare model."""

    name = "base"

    def __init__(self, env: DistEnv, cfg: dict):
        self.env = env
        self.cfg = cfg
        self.model: nn.Module | None = None
        self.module: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    # --- set-up -----------------------------------------------------------------------------------------------
    def setup(self) -> None:
        if self.env.world_size > 1 or self.name != "single":
            init_process_group(self.env)

    def prepare(self, module: nn.Module, build_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
                micro_batch: int, grad_accum: int, clip_grad: float) -> None:
        raise NotImplementedError

    # --- one optimizer step -----------------------------------------------------------------------------------
    def sync_context(self, last_micro: bool):
        """Gradient synchronisation only on the last micro-batch of a step."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """`loss` is this rank's share of the step's loss, already divided by the global batch's token count:
        the backend makes the gradients the sum over ranks and micro-batches."""
        raise NotImplementedError

    def step(self, clip_grad: float) -> float:
        """Clip, step, zero the gradients; returns the global gradient norm before clipping."""
        raise NotImplementedError

    def skip_next_step(self) -> None:
        """Veto the coming optimizer step (NaN/inf loss); the gradients are still cleared."""
        self.optimizer.skip_next_step = True

    def set_lr(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    # --- collectives ------------------------------------------------------------------------------------------
    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if dist.is_initialized() and self.env.world_size > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        """`t` of rank `src` on every rank, in place."""
        if dist.is_initialized() and self.env.world_size > 1:
            dist.broadcast(t, src)
        return t

    def barrier(self) -> None:
        if dist.is_initialized() and self.env.world_size > 1:
            dist.barrier()

    # --- checkpoints (called on every rank; the trainer writes the rest) ----------------------------------------
    def save_state(self, ckpt_dir: Path) -> None:
        """Write model.pt (full fp32 state dict) and optimizer.pt (full, keyed by parameter name) from rank 0."""
        model_sd = get_model_state_dict(self.model, options=_SAVE)
        optim_sd = get_optimizer_state_dict(self.model, self.optimizer, options=_SAVE)
        if self.env.is_main:
            torch.save(model_sd, ckpt_dir / "model.pt")
            torch.save(optim_sd, ckpt_dir / "optimizer.pt")

    def load_state(self, ckpt_dir: Path, load_optimizer: bool = True) -> None:
        # mmap: every rank reads the same files through the page cache instead of holding its own copy.
        model_sd = torch.load(ckpt_dir / "model.pt", map_location="cpu", mmap=True, weights_only=True)
        set_model_state_dict(self.model, model_sd, options=_LOAD)
        if not load_optimizer:
            return
        if (ckpt_dir / "optimizer.pt").is_file():
            optim_sd = torch.load(ckpt_dir / "optimizer.pt", map_location="cpu", mmap=True, weights_only=True)
        else:  # a DeepSpeed checkpoint: its name-keyed full optimizer state
            optim_sd = self._from_name_keyed(torch.load(ckpt_dir / "optimizer_full.pt", map_location="cpu",
                                                        weights_only=True))
        set_optimizer_state_dict(self.model, self.optimizer, optim_sd, options=_LOAD)

    def _from_name_keyed(self, named: dict) -> dict:
        """{param name: {state key: tensor}} (+ "__step__") -> a full optimizer state dict for this optimizer."""
        template = get_optimizer_state_dict(self.model, self.optimizer, options=_SAVE)  # groups keyed by name
        step = named.pop("__step__", None)
        state = {name: dict(entry) for name, entry in named.items()}
        if step is not None:
            for entry in state.values():
                entry["step"] = step.clone()
        return {"state": state, "param_groups": template["param_groups"]}

    def full_model_state_dict(self) -> dict | None:
        """The full model state dict (CPU) on rank 0, None elsewhere; collective."""
        sd = get_model_state_dict(self.model, options=_SAVE)
        return sd if self.env.is_main else None

    def close(self, clean: bool = True) -> None:
        """`clean`: every rank got here normally, so wait for all of them first (a rank that tears gloo down while
        its peer is still in a collective makes the peer abort: "terminate called without an active exception").
        After an error the peers may never come: no barrier."""
        if dist.is_initialized():
            if clean:
                dist.barrier()
            # DDP's C++ Reducer must not hold the last reference to the gloo group: freeing it then ran the group's
            # destructor with the GIL held, joining a worker thread that waited for the GIL to free the barrier's
            # work (about 1 finished run in 25 hung at exit). Dropped first, the group goes in destroy_process_group,
            # whose Python holder releases the GIL.
            self.release_wrappers()
            gc.collect()  # a wrapper in a reference cycle goes now, not at some later collection
            dist.destroy_process_group()

    def release_wrappers(self) -> None:
        """Drop what wraps `module` for the process group (DDP); `model` is the bare module afterwards."""
