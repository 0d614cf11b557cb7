"""What several benches share: timing, the trainer run in-process on the test corpus, the model built from
configs/model/ with --set overrides. A bench imports it as `common` (its own folder is first on sys.path)."""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence


def best_time(fn: Callable[[], object], repeats: int = 3, clock=time.perf_counter) -> tuple[float, object]:
    """The shortest of `repeats` runs of fn() on `clock` (time.process_time: this process's CPU seconds, which the
    neighbours on a shared machine do not inflate), and fn's last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = clock()
        result = fn()
        best = min(best, clock() - t0)
    return best, result


def trainer_corpus() -> Path:
    """tests/trainer's small real corpus (stdlib sources, a BPE, token shards) in a fresh temporary folder."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "trainer"))
    from trainer_corpus import write_corpus

    return write_corpus(Path(tempfile.mkdtemp()) / "corpus")


def train_config(overrides: list[str]) -> dict:
    """configs/train.yaml composed by Hydra with `overrides` and resolved: what refact-train would run."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from data_pipeline.config import config_dir
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return OmegaConf.to_container(compose("train", overrides=overrides), resolve=True)


def trainer_metrics(overrides: list[str]) -> list[dict]:
    """refact-train run in this process, in a fresh run directory: the rows of its metrics.jsonl."""
    from refact_train.trainer import train

    run = Path(tempfile.mkdtemp()) / "run"
    train(train_config([*overrides, f"run_dir={run}"]))
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def parse_overrides(items: Sequence[str]) -> dict:
    """--set KEY=VALUE ... as model config overrides (integers as int)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def build_model(name: str, device, sets: Sequence[str] = (), **config):
    """configs/model/NAME.yaml with `config` and the --set overrides, seed 0, initialised on `device` (where it runs:
    seconds on a GPU instead of a minute on the host)."""
    import torch

    from refact_train.model import RefactForCausalLM
    from refact_train.models import load_model_config
    cfg = load_model_config(name, **config, **parse_overrides(sets))
    torch.manual_seed(0)
    with torch.device(device):
        return RefactForCausalLM(cfg)
