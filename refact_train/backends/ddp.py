"""torch DistributedDataParallel; gloo on CPU, nccl on GPU."""
from __future__ import annotations

from torch.nn.parallel import DistributedDataParallel as DDP

from refact_train.backends.single import SingleBackend


class DDPBackend(SingleBackend):
    name = "ddp"

    def prepare(self, module, build_optimizer, micro_batch, grad_accum, clip_grad):
        self.module = module.to(self.env.device)
        ids = [self.env.device.index] if self.env.device.type == "cuda" else None
        self.model = DDP(self.module, device_ids=ids, broadcast_buffers=False,
                         find_unused_parameters=bool(self.cfg.get("find_unused_parameters", False)))
        self.optimizer = build_optimizer(self.module)

    def release_wrappers(self) -> None:
        self.model = self.module

    def sync_context(self, last_micro):
        return self.model.no_sync() if not last_micro else super().sync_context(last_micro)

    def backward(self, loss):
        # DDP averages gradients over ranks; the trainer's loss is a share of a global sum.
        (loss * self.env.world_size).backward()
