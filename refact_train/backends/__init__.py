"""Training backends behind one interface: single process, DDP, FSDP2, DeepSpeed ZeRO 1-3."""
from refact_train.backends.base import Backend, DistEnv, dist_env


def make_backend(name: str, env: DistEnv, cfg: dict) -> Backend:
    """`name` is the dist config's `backend`: single | ddp | fsdp2 | deepspeed (`cfg` is the resolved dist config)."""
    if name == "single":
        from refact_train.backends.single import SingleBackend
        return SingleBackend(env, cfg)
    if name == "ddp":
        from refact_train.backends.ddp import DDPBackend
        return DDPBackend(env, cfg)
    if name == "fsdp2":
        from refact_train.backends.fsdp2 import FSDP2Backend
        return FSDP2Backend(env, cfg)
    if name == "deepspeed":
        from refact_train.backends.deepspeed import DeepSpeedBackend
        return DeepSpeedBackend(env, cfg)
    raise ValueError(f"dist.backend={name!r}: expected single, ddp, fsdp2 or deepspeed (configs/dist/)")


__all__ = ["Backend", "DistEnv", "dist_env", "make_backend"]
