"""Batched generation for the evals: length-sorted batches through `refact_train.model.generate` (KV cache)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from evals.eval_config import at_least
from refact_train.model import generate


@dataclass(frozen=True)
class GenerationConfig:
    batch_size: int = 8
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    use_cache: bool = True
    stop_check_tokens: int = 64  # with stop sequences: generate this many tokens, drop the rows that stopped, go on

    def __post_init__(self) -> None:
        at_least("generation.", self, batch_size=1, stop_check_tokens=1)  # batch_size=0: range()'s error, late


@dataclass
class GenerationStats:
    prompts: int = 0
    new_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


class BatchGenerator:
    """Continues many prompts: sorts them by length so that a batch wastes little on left padding. `vocab_size`: the
    tokenizer's; the embedding's padding rows past it are never produced (decode would drop them silently)."""

    def __init__(self, model: torch.nn.Module, config: GenerationConfig, seed: int = 0, vocab_size: int | None = None):
        self.model = model
        self.config = config
        self.seed = seed
        self.vocab_size = vocab_size
        self.n_positions = int(model.config.n_positions)
        self.stats = GenerationStats()

    def room(self, prompt_len: int, max_new_tokens: int) -> int:
        """New tokens that fit after a prompt of this length (at least 1: longer prompts are cut from the left), none
        when none are asked (max_new_tokens=0 gave one)."""
        return max(min(1, max_new_tokens), min(max_new_tokens, self.n_positions - prompt_len))

    def fit_prompt(self, prompt: Sequence[int], max_new_tokens: int) -> list[int]:
        """Keep the end of a prompt that leaves no room to generate (completion prompts; FIM prompts are trimmed by
        whole lines before they get here)."""
        keep = self.n_positions - min(max_new_tokens, self.n_positions // 2)
        return list(prompt[-keep:]) if len(prompt) > keep else list(prompt)

    def run(self, prompts: Sequence[Sequence[int]], stop_token_ids: Sequence[int], desc: str = "generate",
            max_new_tokens: int | None = None, temperature: float | None = None,
            stop_sequences: Sequence[str] = (), decode: Callable[[list[int]], str] | None = None) -> list[list[int]]:
        """Generated ids per prompt (stop token excluded). With `stop_sequences` (and `decode`), generation goes in
        rounds of `stop_check_tokens` and a row stops once its text contains a stop sequence, instead of running to
        `max_new_tokens` (the caller still cuts the text at the stop sequence)."""
        cfg = self.config
        max_new = cfg.max_new_tokens if max_new_tokens is None else max_new_tokens
        temp = cfg.temperature if temperature is None else temperature
        start = time.perf_counter()
        if not stop_sequences:
            out = self._generate(prompts, stop_token_ids, max_new, temp, desc, round_index=0)
        else:
            if decode is None:
                raise ValueError("BatchGenerator.run: stop_sequences need decode= (ids -> text)")
            out = [[] for _ in prompts]
            active = list(range(len(prompts)))
            for round_index in range(max_new):
                if not active:
                    break
                # every active row has produced the same number of tokens so far (none stopped early)
                step = min(cfg.stop_check_tokens, max_new - len(out[active[0]]))
                new = self._generate([list(prompts[i]) + out[i] for i in active], stop_token_ids, step, temp,
                                     f"{desc} (round {round_index + 1})", round_index)
                still = []
                for i, ids in zip(active, new):
                    out[i] += ids
                    ended = len(ids) < step or len(out[i]) >= max_new  # a stop token, or the budget is spent
                    if not ended and not any(stop in decode(out[i]) for stop in stop_sequences):
                        still.append(i)
                active = still
        self.stats.prompts += len(prompts)
        self.stats.new_tokens += sum(len(ids) for ids in out)
        self.stats.seconds += time.perf_counter() - start
        return out

    def _generate(self, prompts: Sequence[Sequence[int]], stop_token_ids: Sequence[int], max_new: int, temp: float,
                  desc: str, round_index: int) -> list[list[int]]:
        fitted = [self.fit_prompt(p, max_new) for p in prompts]
        order = sorted(range(len(fitted)), key=lambda i: len(fitted[i]))
        out: list[list[int]] = [[] for _ in fitted]
        batch_size = self.config.batch_size
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for b, rows in enumerate(tqdm(batches, desc=desc, unit="batch", leave=False)):
            longest = max(len(fitted[i]) for i in rows)
            seed = None if temp <= 0 else (self.seed * 1_000_003 + round_index) * 1_000_003 + b
            generated = generate(self.model, [fitted[i] for i in rows], self.room(longest, max_new),
                                 temperature=temp, top_p=self.config.top_p, stop_token_ids=tuple(stop_token_ids),
                                 use_cache=self.config.use_cache, seed=seed, vocab_size=self.vocab_size)
            for i, ids in zip(rows, generated):
                out[i] = ids
        return out
