"""Batched generation for the evals: length-sorted batches through `refact_train.model.generate` (KV cache)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from refact_train.model import generate


@dataclass(frozen=True)
class GenerationConfig:
    batch_size: int = 8
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    use_cache: bool = True


@dataclass
class GenerationStats:
    prompts: int = 0
    new_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


class BatchGenerator:
    """Continues many prompts: sorts them by length so that a batch wastes little on left padding."""

    def __init__(self, model: torch.nn.Module, config: GenerationConfig, seed: int = 0):
        self.model = model
        self.config = config
        self.seed = seed
        self.n_positions = int(model.config.n_positions)
        self.stats = GenerationStats()

    def room(self, prompt_len: int, max_new_tokens: int) -> int:
        """New tokens that fit after a prompt of this length (at least 1: longer prompts are cut from the left)."""
        return max(1, min(max_new_tokens, self.n_positions - prompt_len))

    def fit_prompt(self, prompt: Sequence[int], max_new_tokens: int) -> list[int]:
        """Keep the end of a prompt that leaves no room to generate (completion prompts; FIM prompts are trimmed by
        whole lines before they get here)."""
        keep = self.n_positions - min(max_new_tokens, self.n_positions // 2)
        return list(prompt[-keep:]) if len(prompt) > keep else list(prompt)

    def run(self, prompts: Sequence[Sequence[int]], stop_token_ids: Sequence[int], desc: str = "generate",
            max_new_tokens: int | None = None, temperature: float | None = None) -> list[list[int]]:
        cfg = self.config
        max_new = cfg.max_new_tokens if max_new_tokens is None else max_new_tokens
        temp = cfg.temperature if temperature is None else temperature
        fitted = [self.fit_prompt(p, max_new) for p in prompts]
        order = sorted(range(len(fitted)), key=lambda i: len(fitted[i]))
        out: list[list[int] | None] = [None] * len(fitted)
        start = time.perf_counter()
        batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        for b, rows in enumerate(tqdm(batches, desc=desc, unit="batch", leave=False)):
            longest = max(len(fitted[i]) for i in rows)
            generated = generate(self.model, [fitted[i] for i in rows], self.room(longest, max_new),
                                 temperature=temp, top_p=cfg.top_p, stop_token_ids=tuple(stop_token_ids),
                                 use_cache=cfg.use_cache, seed=None if temp <= 0 else self.seed * 1_000_003 + b)
            for i, ids in zip(rows, generated):
                out[i] = ids
                self.stats.new_tokens += len(ids)
        self.stats.prompts += len(fitted)
        self.stats.seconds += time.perf_counter() - start
        return [ids or [] for ids in out]
