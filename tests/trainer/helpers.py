"""Shared helpers of the trainer tests: composing configs, running in-process and under torchrun."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

# A model small enough for 2 shared CPU cores; the architecture is the real one.
TINY = ["model=tiny", "model.n_embd=64", "model.n_layer=2", "model.n_head=2", "data.seq_len=64",
        "train.global_batch=8", "train.micro_batch=4", "train.precision=fp32", "train.device=cpu", "train.cpu_threads=1",
        "metrics.wandb=false", "metrics.progress=false", "optim.warmup_steps=1", "optim.lr=2e-3"]


def compose(overrides: list[str]) -> dict:
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf

    from data_pipeline.config import config_dir
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def train_inprocess(overrides: list[str]):
    from refact_train.trainer import train
    return train(compose(TINY + overrides))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    return env


def run_cli(overrides: list[str], nproc: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    """`refact-train` in a subprocess; under torchrun (gloo) when nproc > 1."""
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "refact_train.cli.train"]
    else:
        cmd = [sys.executable, "-m", "refact_train.cli.train"]
    proc = subprocess.run(cmd + TINY + overrides, capture_output=True, text=True, timeout=timeout, env=cli_env())
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if x.strip()]


def losses(run_dir: Path) -> dict[int, float]:
    out = {}
    for r in metrics(run_dir):
        out[r["step"]] = r["loss"]
    return out


def weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return torch.load(Path(run_dir) / "checkpoints" / f"step-{step:08d}" / "model.pt", weights_only=True)


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
