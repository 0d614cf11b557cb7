"""What the launch tests train: the tiny model on the small corpus with 2 processes (DDP over gloo on CPU)."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def tiny_overrides(corpus: Path, run_dir: Path, max_steps: int, checkpoint_every: int = 1000) -> list[str]:
    return ["experiment=tiny_cpu", "dist=ddp", f"data.path={corpus}", f"run_dir={run_dir}",
            f"train.max_steps={max_steps}", f"checkpoint.every={checkpoint_every}", "data.seq_len=64",
            "metrics.progress=false", "metrics.wandb=false"]


def checkpoint_steps(run_dir: Path) -> list[int]:
    root = run_dir / "checkpoints"
    return sorted(int(p.name.split("-")[1]) for p in root.glob("step-*") if (p / "COMPLETE.json").exists())


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    last = max(checkpoint_steps(run_dir))
    state = torch.load(run_dir / "checkpoints" / f"step-{last:08d}" / "model.pt", map_location="cpu",
                       weights_only=True)
    return state.get("model", state) if isinstance(state, dict) else state


def logged_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]
