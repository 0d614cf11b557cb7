"""What every task runner gets: the model, its tokenizer, the batch generator, the sandbox and where to write."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from evals.generation import BatchGenerator
from evals.sandbox import Sandbox, SandboxConfig


@dataclass
class EvalContext:
    model: torch.nn.Module
    tokenizer: Any  # data_pipeline.tokenizer.RefactTokenizer
    generator: BatchGenerator
    sandbox_config: SandboxConfig
    out_dir: Path  # per-sample JSONL files go here, beside the result
    limit: int | None = None  # at most this many problems / tasks / documents / windows per task (smoke runs)
    seed: int = 0
    data_dir: Path | None = None  # a refact-pipeline output directory (heldout/, shards/)
    _sandbox: Sandbox | None = field(default=None, repr=False)

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(self.sandbox_config)
        return self._sandbox

    def limited(self, items: list) -> list:
        return items[: self.limit] if self.limit else items

    def require_data_dir(self, task: str) -> Path:
        if self.data_dir is None:
            raise ValueError(f"task {task} needs data=DIR: a refact-pipeline output directory (with heldout/ and "
                             f"shards/); or drop {task} from tasks=[...]")
        if not self.data_dir.is_dir():
            raise FileNotFoundError(f"task {task}: data={self.data_dir} is not a directory")
        return self.data_dir

    def write_samples(self, name: str, rows: Iterable[dict]) -> Path:
        path = self.out_dir / name
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path
