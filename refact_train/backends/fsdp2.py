"""FSDP2: `fully_shard` on every transformer block, then on the root."""
from __future__ import annotations

import contextlib

import torch
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from refact_train.backends.single import SingleBackend


def transformer_blocks(module):
    """The blocks to shard one by one: `transformer.h` of RefactForCausalLM (also through a peft wrapper)."""
    for name, m in module.named_modules():
        if name.endswith("transformer.h") and isinstance(m, torch.nn.ModuleList):
            return list(m)
    return []


class FSDP2Backend(SingleBackend):
    name = "fsdp2"

    def prepare(self, module, build_optimizer, micro_batch, grad_accum, clip_grad):
        module = module.to(self.env.device)
        mp = None
        if self.cfg.get("bf16_params") and self.env.device.type == "cuda":
            mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        kwargs = {"mp_policy": mp} if mp else {}
        reshard = bool(self.cfg.get("reshard_after_forward", True))
        for block in transformer_blocks(module):
            fully_shard(block, reshard_after_forward=reshard, **kwargs)
        fully_shard(module, reshard_after_forward=reshard, **kwargs)
        self.module = self.model = module
        self.optimizer = build_optimizer(self.module)

    def sync_context(self, last_micro):
        self.model.set_requires_gradient_sync(last_micro)
        return contextlib.nullcontext()

    def backward(self, loss):
        # FSDP2 reduce-scatter averages over ranks; the trainer's loss is a share of a global sum.
        (loss * self.env.world_size).backward()
