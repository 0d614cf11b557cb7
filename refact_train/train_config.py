"""The training config's sections, typed and range-checked before any work (configs/train.yaml and its groups).

Every section a run reads is checked here, top-level keys included: an unknown key (`+max_steps=5` for
`train.max_steps=5`, `+export.evry=5`) was ignored silently, a value out of range surfaced as a traceback after the
model was built, or never (export.every=-1 exported at every checkpoint, metrics.wandb=maybe turned wandb on).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from data_pipeline.config import check_at_least, config_from_dict
from refact_train.backends import BACKENDS
from refact_train.data import DataConfig
from refact_train.early_dropout import EarlyDropoutConfig
from refact_train.lora import LoraConfig
from refact_train.model import RefactConfig
from refact_train.optim import OptimConfig
from refact_train.validation import ValidationConfig


class ConfigError(ValueError):
    """A config value the run cannot use, found before any work: said in one line."""


@dataclass(frozen=True)
class TrainSection:
    """`train.*` (configs/train.yaml): types checked by config_from_dict, ranges here."""

    max_steps: int = 100
    stop_after: int | None = None
    global_batch: int = 8
    micro_batch: int = 4
    precision: str = "auto"
    device: str = "auto"
    cpu_threads: int | None = None
    log_every: int = 1
    max_nan_steps: int = 5
    compile: bool = False
    activation_checkpointing: bool = False
    vocab_from_tokenizer: bool = True

    def __post_init__(self) -> None:
        check_at_least(self, "train", max_steps=1, stop_after=1, global_batch=1, micro_batch=1, cpu_threads=1,
                       log_every=1, max_nan_steps=0)
        for key, allowed in (("precision", ("auto", "bf16", "fp32")), ("device", ("auto", "cpu", "cuda"))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"train.{key} must be one of {allowed}, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class CheckpointSection:
    """`checkpoint.*`: `every` steps (and at the end, and on a preemption signal); `keep_last` 0 keeps them all."""

    every: int = 100
    keep_last: int = 3
    on_signal: bool = True

    def __post_init__(self) -> None:
        if self.every < 1 or self.keep_last < 0:
            raise ValueError(f"checkpoint.every must be >= 1 and checkpoint.keep_last >= 0, got {self.every} and "
                             f"{self.keep_last}")


@dataclass(frozen=True)
class RunSection:
    """The top-level keys; the sections are checked by their own classes."""

    run_dir: str = "runs/default"
    resume: str | bool | None = "auto"  # auto | never (false, null) | PATH of a checkpoint, checkpoints/ or run dir
    init_from: str | None = None
    tokenizer: str | None = None
    allow_other_tokenizer: bool = False
    seed: int = 1234
    model: dict = field(default_factory=dict)
    optim: dict = field(default_factory=dict)
    dist: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    early_dropout: dict = field(default_factory=dict)
    checkpoint: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    export: dict = field(default_factory=dict)
    lora: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.run_dir:
            raise ValueError("run_dir must be a directory path, got an empty string")
        if self.resume is True or (isinstance(self.resume, str) and self.resume not in ("auto", "never")
                                   and not Path(self.resume).exists()):
            raise ValueError(f"resume={self.resume}: neither auto, never nor an existing path; give the PATH of a "
                             f"checkpoint (a step dir, a checkpoints/ dir or a run dir)")


@dataclass(frozen=True)
class DistSection:
    """`dist.*` (configs/dist/): the backend and its options; `zero` is passed to DeepSpeed's zero_optimization."""

    backend: str = "single"
    zero_stage: int = 2
    bf16_params: bool = False
    reshard_after_forward: bool = True
    find_unused_parameters: bool = False
    cpu_shm_comm: bool = False
    zero: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"dist.backend must be one of {tuple(BACKENDS)}, got {self.backend!r}")
        if self.zero_stage not in (1, 2, 3):
            raise ValueError(f"dist.zero_stage must be 1, 2 or 3, got {self.zero_stage}")


@dataclass(frozen=True)
class ExportSection:
    """`export.*`: an HF export every `every` checkpointed steps (0: never) and/or at the end."""

    every: int = 0
    final: bool = False

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError(f"export.every must be >= 0 (0: never), got {self.every}")


@dataclass(frozen=True)
class MetricsSection:
    """`metrics.*`: the progress bar, wandb (never fails the run) and the peak FLOP/s for MFU."""

    progress: bool = True
    wandb: bool = True
    wandb_project: str = "refact-train"
    wandb_mode: str = "auto"
    peak_flops: float | None = None

    def __post_init__(self) -> None:
        if self.wandb_mode not in ("auto", "online", "offline", "disabled"):
            raise ValueError(f"metrics.wandb_mode must be one of auto, online, offline, disabled, got "
                             f"{self.wandb_mode!r}")
        if self.peak_flops is not None and not (math.isfinite(self.peak_flops) and self.peak_flops > 0):
            raise ValueError(f"metrics.peak_flops must be > 0 (FLOP/s per GPU) or null, got {self.peak_flops}")


def check_device(device: str) -> None:
    """train.device (or auto's pick) usable here, with a CUDA device for this process's LOCAL_RANK."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda: torch sees no CUDA device here; use train.device=auto or cpu")
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device in ("cuda", "auto") and torch.cuda.is_available() and local >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK={local}, but torch sees {torch.cuda.device_count()} CUDA device(s): start at "
                         f"most that many processes per node (torchrun --nproc_per_node)")


def check_config(cfg: dict) -> None:
    """Every section the trainer reads, typed and in range, before the backend, the data and the model are set up."""
    try:
        config_from_dict(RunSection, cfg, "config")
        train = config_from_dict(TrainSection, cfg.get("train"), "train")
        config_from_dict(CheckpointSection, cfg.get("checkpoint"), "checkpoint")
        # the model section too (ignored with init_from, where the model's own config is used): model.n_embd=abc or
        # +model.foo=1 was a traceback once the backend and the tokenizer were set up, exit 1
        config_from_dict(RefactConfig, cfg.get("model"), "model")
        if "seed" in (cfg.get("data") or {}):
            raise ValueError("data: unknown key(s) ['seed']; the run's seed is the top-level seed=")
        config_from_dict(DataConfig, {**(cfg.get("data") or {}), "seed": cfg.get("seed", 0)}, "data")
        config_from_dict(EarlyDropoutConfig, cfg.get("early_dropout"), "early_dropout")
        OptimConfig.from_dict(cfg.get("optim") or {})
        ValidationConfig.from_dict(cfg.get("validation"))
        LoraConfig.from_dict(cfg.get("lora") or {})
        config_from_dict(DistSection, cfg.get("dist"), "dist")
        config_from_dict(ExportSection, cfg.get("export"), "export")
        config_from_dict(MetricsSection, cfg.get("metrics"), "metrics")
        check_device(train.device)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad config: {exc} (configs/train.yaml and its groups; set a value with key=value)") from None
