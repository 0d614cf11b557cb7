"""DeepSpeed ZeRO 1/2/3 with its own engine and checkpoint format; the client optimizer (Lion) is ours.

Besides DeepSpeed's own checkpoint (used to resume on the same process count), rank 0 writes the full fp32 model
(`model.pt`) and the full optimizer state keyed by parameter name (`optimizer_full.pt`), gathered with
DeepSpeed's tensor-fragment API: that is what `refact-export` reads and what a resume on another process count
(or another backend) loads.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from lion_pytorch import Lion

from refact_train.backends.base import Backend, init_process_group

DS_TAG = "deepspeed"


class DeepSpeedBackend(Backend):
    name = "deepspeed"

    def setup(self):
        import deepspeed
        import deepspeed.ops
        if self.env.device.type == "cpu" and not self.cfg.get("cpu_shm_comm", False):
            # On CPU DeepSpeed JIT-compiles a shared-memory all-reduce (minutes on a small machine, and a stale build
            # lock from a killed run blocks every later run). gloo is enough for CPU runs: mark the op unavailable,
            # which also skips DeepSpeed's op probing (its only reader is comm/torch.py's build_shm_op).
            if "__compatible_ops__" not in vars(deepspeed.ops):
                deepspeed.ops.__compatible_ops__ = {}
            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        init_process_group(self.env)
        deepspeed.init_distributed(dist_backend="nccl" if self.env.device.type == "cuda" else "gloo")

    def ds_config(self, micro_batch: int, grad_accum: int, clip_grad: float) -> dict:
        zero = {"stage": int(self.cfg.get("zero_stage", 2))}
        zero.update(dict(self.cfg.get("zero", {}) or {}))
        return {
            "train_micro_batch_size_per_gpu": micro_batch,
            "gradient_accumulation_steps": grad_accum,
            "train_batch_size": micro_batch * grad_accum * self.env.world_size,
            "gradient_clipping": clip_grad,
            "zero_optimization": zero,
            # Lion is not one of DeepSpeed's own optimizers: ZeRO must be told to accept a client optimizer.
            "zero_allow_untested_optimizer": True,
            "bf16": {"enabled": bool(self.cfg.get("bf16_params", False)) and self.env.device.type == "cuda"},
            "steps_per_print": 10 ** 9,
            "wall_clock_breakdown": False,
        }

    def prepare(self, module, build_optimizer, micro_batch, grad_accum, clip_grad):
        import deepspeed
        module = module.to(self.env.device)
        optimizer = build_optimizer(module)
        self.grad_accum = grad_accum
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=module, optimizer=optimizer, config=self.ds_config(micro_batch, grad_accum, clip_grad))
        self._client_optimizer = optimizer
        self.model = self.engine
        self.module = self.engine.module

    def backward(self, loss):
        # DeepSpeed averages over ranks and divides by the accumulation steps; undo both for a global sum.
        self.engine.backward(loss * self.env.world_size * self.grad_accum)
        self.engine.step()  # a no-op except at the accumulation boundary, where it clips, steps and zeroes

    def step(self, clip_grad):
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def skip_next_step(self):
        self._client_optimizer.skip_next_step = True

    def set_lr(self, lr):
        for g in (*self.optimizer.param_groups, *self._client_optimizer.param_groups):
            g["lr"] = lr

    # --- checkpoints -------------------------------------------------------------------------------------------
    def full_model_state_dict(self):
        from deepspeed.utils import safe_get_full_fp32_param
        sd = {}
        for name, p in self.module.named_parameters():
            full = safe_get_full_fp32_param(p)  # collective for ZeRO-3
            if self.env.is_main:
                sd[name] = full.detach().float().cpu().clone()
        if self.env.is_main:
            persistent = set(self.module.state_dict().keys())
            for name, b in self.module.named_buffers():
                if name in persistent:
                    sd[name] = b.detach().cpu().clone()
        return sd if self.env.is_main else None

    def _relink_optimizer_fragments(self) -> None:
        """DeepSpeed links each parameter to its optimizer-state fragment once, after the first step of the first
        param group, so a lazily initialised client optimizer (Lion, AdamW) with two groups (decay / no decay) leaves
        the second group unlinked; link again now that every group has state."""
        opt = self.engine.optimizer
        if hasattr(opt, "_hp_optimizer_states_linked") and hasattr(opt, "_lazy_init_hp_params_optimizer_state"):
            opt._hp_optimizer_states_linked = False
            opt._lazy_init_hp_params_optimizer_state()

    def _ensure_optimizer_state(self) -> None:
        """Create the client optimizer's (still lazy) state as zeros so that a full state can be set into it."""
        keys = _state_keys(self._client_optimizer)
        zero = self.engine.optimizer
        # the fp32 tensors the client optimizer steps: its groups' params (ZeRO-1/2) or ZeRO-3's flat partitions
        tensors = [p for g in self._client_optimizer.param_groups for p in g["params"]]
        tensors += list(getattr(zero, "fp32_partitioned_groups_flat", []))
        for p in {id(t): t for t in tensors}.values():
            st = self._client_optimizer.state[p]
            for k in keys:
                st.setdefault(k, torch.zeros_like(p))
            if "exp_avg_sq" in keys:
                st.setdefault("step", torch.tensor(0.0))

    def _full_optimizer_state(self) -> dict | None:
        from deepspeed.utils import safe_get_full_optimizer_state
        self._relink_optimizer_fragments()
        keys = _state_keys(self._client_optimizer)
        out = {}
        for name, p in self.module.named_parameters():
            entry = {}
            for k in keys:
                t = safe_get_full_optimizer_state(p, k)
                if t is not None and self.env.is_main:
                    entry[k] = t.detach().float().cpu().clone()
            if self.env.is_main:
                out[name] = entry
        steps = [st["step"] for st in self._client_optimizer.state.values() if "step" in st]
        if self.env.is_main and steps:
            out["__step__"] = torch.as_tensor(steps[0]).clone()
        return out if self.env.is_main else None

    def save_state(self, ckpt_dir: Path) -> None:
        self.engine.save_checkpoint(str(ckpt_dir), tag=DS_TAG, client_state={}, save_latest=False)
        model_sd = self.full_model_state_dict()
        optim_sd = self._full_optimizer_state()
        if self.env.is_main:
            torch.save(model_sd, ckpt_dir / "model.pt")
            torch.save(optim_sd, ckpt_dir / "optimizer_full.pt")
            (ckpt_dir / "deepspeed.json").write_text(json.dumps({"world_size": self.env.world_size,
                                                                  "zero_stage": int(self.cfg.get("zero_stage", 2))}))

    def load_state(self, ckpt_dir: Path, load_optimizer: bool = True) -> None:
        meta_file = ckpt_dir / "deepspeed.json"
        same_layout = False
        if meta_file.is_file() and (ckpt_dir / DS_TAG).is_dir():
            meta = json.loads(meta_file.read_text())
            same_layout = (meta["world_size"] == self.env.world_size
                           and meta["zero_stage"] == int(self.cfg.get("zero_stage", 2)))
        if same_layout:
            self.engine.load_checkpoint(str(ckpt_dir), tag=DS_TAG, load_optimizer_states=load_optimizer,
                                        load_lr_scheduler_states=False)
            return
        self._load_full(ckpt_dir, load_optimizer)

    def _load_full(self, ckpt_dir: Path, load_optimizer: bool) -> None:
        """Another process count, ZeRO stage or backend: set full fp32 weights and optimizer state by name."""
        from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state
        model_sd = torch.load(ckpt_dir / "model.pt", map_location="cpu", mmap=True, weights_only=True)
        optim_sd = _name_keyed_optimizer_state(ckpt_dir) if load_optimizer else None
        if optim_sd is not None:
            self._ensure_optimizer_state()
            self._relink_optimizer_fragments()
            if "__step__" in optim_sd:
                for st in self._client_optimizer.state.values():
                    if "step" in st:
                        st["step"] = optim_sd["__step__"].clone()
        import deepspeed
        for name, p in self.module.named_parameters():
            safe_set_full_fp32_param(p, model_sd[name].to(self.env.device))
            # that sets only the optimizer's fp32 master copy: the module's own weights, which the forward pass
            # reads, would stay the initial ones until the first step has copied the master back
            if hasattr(p, "ds_id"):  # ZeRO-3: gathered, set on rank 0, partitioned again from it
                with deepspeed.zero.GatheredParameters([p], modifier_rank=0):
                    if self.env.is_main:
                        p.data.copy_(model_sd[name])
            else:
                p.data.copy_(model_sd[name])
            if optim_sd is not None and name in optim_sd:
                for k, v in optim_sd[name].items():
                    if torch.is_tensor(v) and v.ndim > 0:
                        safe_set_full_optimizer_state(p, v.to(self.env.device), k)


def _state_keys(optimizer) -> list[str]:
    if isinstance(optimizer, Lion):
        return ["exp_avg"]
    return ["exp_avg", "exp_avg_sq"]


def _name_keyed_optimizer_state(ckpt_dir: Path) -> dict:
    """{param name: {state key: tensor}} from either a DeepSpeed or a full-state (single/DDP/FSDP2) checkpoint."""
    full = ckpt_dir / "optimizer_full.pt"
    if full.is_file():
        return torch.load(full, map_location="cpu", mmap=True, weights_only=True)
    sd = torch.load(ckpt_dir / "optimizer.pt", map_location="cpu", mmap=True, weights_only=True)
    return sd["state"]  # get_optimizer_state_dict(full_state_dict=True) keys state by parameter name
