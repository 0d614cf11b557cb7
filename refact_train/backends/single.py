"""One process, no wrapper."""
from __future__ import annotations

import torch

from refact_train.backends.base import Backend


class SingleBackend(Backend):
    name = "single"

    def prepare(self, module, build_optimizer, micro_batch, grad_accum, clip_grad):
        self.module = self.model = module.to(self.env.device)
        self.optimizer = build_optimizer(self.module)

    def backward(self, loss):
        loss.backward()

    def step(self, clip_grad):
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, clip_grad if clip_grad > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
