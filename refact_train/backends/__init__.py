"""Training backends behind one interface: single process, DDP, FSDP2, DeepSpeed ZeRO 1-3."""
from refact_train.backends.base import Backend, DistEnv, dist_env
from refact_train.backends.ddp import DDPBackend
from refact_train.backends.deepspeed import DeepSpeedBackend
from refact_train.backends.fsdp2 import FSDP2Backend
from refact_train.backends.single import SingleBackend

BACKENDS = {"single": SingleBackend, "ddp": DDPBackend, "fsdp2": FSDP2Backend, "deepspeed": DeepSpeedBackend}


def make_backend(name: str, env: DistEnv, cfg: dict) -> Backend:
    """`name` is the dist config's `backend`: single | ddp | fsdp2 | deepspeed (`cfg` is the resolved dist config)."""
    if name not in BACKENDS:
        raise ValueError(f"dist.backend={name!r}: expected single, ddp, fsdp2 or deepspeed (configs/dist/)")
    return BACKENDS[name](env, cfg)


__all__ = ["BACKENDS", "Backend", "DistEnv", "dist_env", "make_backend"]
