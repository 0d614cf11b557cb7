"""Packed token shards -> training batches.

The training data is one packed stream of token ids (the concatenation of a split's shards, documents separated by
EOT). Sample k is the window ``stream[k*L : k*L + L + 1]`` (L = seq_len; the extra token is the last target).
The order is a permutation of the samples drawn from (seed, epoch), so the whole data position is one number: the
global sample index g (epoch = g // n_samples). FIM is applied per sample with an RNG drawn from (seed, g), which
makes every sample a pure function of (data, seed, g) no matter how many processes read it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from data_pipeline.fim import FimConfig, apply_fim, fim_rng
from data_pipeline.shards import REBUILD, ManifestError, read_manifest, split_arrays
from data_pipeline.tokenizer import load_tokenizer
from refact_train.permutation import epoch_permutation


@dataclass(frozen=True)
class DataConfig:
    path: str                      # a pipeline output dir (reads DIR/shards/) or a shards dir itself
    split: str = "train"
    seq_len: int = 256
    seed: int = 1234
    fim: dict = field(default_factory=dict)   # FimConfig fields; rate 0 (or empty) disables FIM
    kind: str = "shards"           # shards | chat (chat records: refact_train/chat_sft.py)

    def __post_init__(self) -> None:
        if self.seq_len < 1 or self.kind not in ("shards", "chat"):
            raise ValueError(f"data.seq_len must be >= 1 and data.kind shards or chat, got {self.seq_len} and "
                             f"{self.kind!r}")
        if self.fim:
            FimConfig.from_dict(self.fim)


@dataclass
class Batch:
    input_ids: torch.Tensor        # [B, L] int64
    labels: torch.Tensor           # [B, L] int64
    loss_mask: torch.Tensor        # [B, L] bool; no loss where False
    sample_indices: list[int]      # global sample indices, for tests and debugging


class TokenStream:
    """The shards of one split as one read-only, memory-mapped token sequence, read through the validated reader
    (data_pipeline/shards.py). `tokenizer_sha256`: the hash of the tokenizer the run uses; shards written with
    another tokenizer are refused. Every read checks its ids against the vocabulary (a damaged .bin would otherwise
    index past the embedding: an IndexError on CPU, a device-side assert on GPU)."""

    def __init__(self, path: str | Path, split: str = "train", tokenizer_sha256: str | None = None):
        self.manifest = read_manifest(path, tokenizer_sha256=tokenizer_sha256)
        self.dir = self.manifest.directory
        self.arrays: list[np.ndarray] = split_arrays(self.manifest, split)
        if not self.arrays:
            raise ManifestError(f"{self.dir}/manifest.json: split {split!r} has no tokens "
                                f"(splits: {sorted(self.manifest.splits)}); {REBUILD} from documents that go to it")
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])
        self.vocab_size = self.manifest.tokenizer.vocab_size

    def __len__(self) -> int:
        return int(self.starts[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start+length) as int64, crossing shard boundaries."""
        out = np.empty(length, dtype=np.int64)
        pos, filled = start, 0
        i = int(np.searchsorted(self.starts, pos, side="right")) - 1
        while filled < length:
            a = self.arrays[i]
            off = pos - int(self.starts[i])
            n = min(length - filled, len(a) - off)
            out[filled:filled + n] = a[off:off + n]
            if n and out[filled:filled + n].max() >= self.vocab_size:
                bad = off + int(np.argmax(out[filled:filled + n] >= self.vocab_size))
                raise ManifestError(f"{a.filename}: token {bad} is id {int(a[bad])}, outside the {self.vocab_size}-"
                                    f"entry vocabulary of {self.dir}/manifest.json (a damaged file); {REBUILD}")
            filled += n
            pos += n
            i += 1
        return out


def sample_at(seed: int, g: int, n_samples: int) -> int:
    """The window read for global sample index g: each epoch's order is a permutation drawn from (seed, epoch) only,
    computed per index in O(1) memory (refact_train/permutation.py)."""
    epoch, pos = divmod(int(g), n_samples)
    return epoch_permutation(seed, epoch, n_samples).at(pos)


def epoch_order(seed: int, epoch: int, n_samples: int) -> np.ndarray:
    """The whole order of one epoch as an array (for tests and inspection; the loaders use `sample_at`)."""
    return epoch_permutation(seed, epoch, n_samples)(np.arange(n_samples))


def fim_transform(fim: dict, seed: int, tokenizer: Any) -> Callable:
    """(tokens, sample index) -> (ids, loss mask): `data.fim` applied with an RNG from (seed, index); with FIM off,
    the tokens unchanged with loss everywhere. The training samples and the validation windows
    (refact_train/validation.py) both go through it."""
    if not fim or float(fim.get("rate", 0.0)) <= 0.0:
        return lambda tokens, index: (tokens, np.ones(len(tokens), dtype=bool))
    fim_cfg = FimConfig.from_dict(dict(fim))

    def transform(tokens: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        out, mask = apply_fim(tokens, rng=fim_rng(seed, index), cfg=fim_cfg, tokenizer=tokenizer)
        return np.asarray(out, dtype=np.int64), np.asarray(mask, dtype=bool)
    return transform


class PackedSamples:
    """Sample g (global sample index, any epoch) -> (tokens[L+1], loss_mask[L+1])."""

    def __init__(self, cfg: DataConfig, tokenizer: Any = None):
        self.cfg = cfg
        self.stream = TokenStream(cfg.path, cfg.split, tokenizer_sha256=getattr(tokenizer, "sha256", None))
        self.n_samples = (len(self.stream) - 1) // cfg.seq_len
        if self.n_samples < 1:
            raise ManifestError(f"{self.stream.dir}: {len(self.stream)} tokens in split {cfg.split!r}, fewer than "
                                f"one sample of seq_len+1 = {cfg.seq_len + 1}; lower data.seq_len or add data")
        fim_on = bool(cfg.fim) and float(cfg.fim.get("rate", 0.0)) > 0.0
        if tokenizer is None and fim_on:
            tokenizer = load_tokenizer(self.stream.dir / "tokenizer.json")
        self._fim = fim_transform(cfg.fim, cfg.seed, tokenizer)

    def __getitem__(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        k = sample_at(self.cfg.seed, g, self.n_samples)
        L = self.cfg.seq_len
        return self._fim(self.stream.read(k * L, L + 1), int(g))


@dataclass(frozen=True)
class BatchLayout:
    """How one optimizer step's global batch is cut into per-rank micro-batches.

    Global batch G = micro_batch * grad_accum * world_size samples; step s covers global sample indices
    [start, start + G). Micro-batch m of rank r holds the samples j with j // micro_batch == m * world + r, so the
    same G samples make one step whatever the process count (resume on a different world size keeps the data).
    """
    micro_batch: int
    grad_accum: int
    world_size: int
    rank: int

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.grad_accum * self.world_size

    def indices(self, start: int, micro: int) -> list[int]:
        first = start + (micro * self.world_size + self.rank) * self.micro_batch
        return list(range(first, first + self.micro_batch))


def layout_for(global_batch: int, micro_batch: int, world_size: int, rank: int) -> BatchLayout:
    per_step = micro_batch * world_size
    if global_batch % per_step:
        raise ValueError(f"train.global_batch={global_batch} is not a multiple of train.micro_batch*world_size="
                         f"{micro_batch}*{world_size}; pick a global batch divisible by both")
    return BatchLayout(micro_batch, global_batch // per_step, world_size, rank)


def collate(samples: list[tuple[np.ndarray, np.ndarray]], indices: list[int]) -> Batch:
    tokens = torch.from_numpy(np.stack([s[0] for s in samples]))
    mask = torch.from_numpy(np.stack([s[1] for s in samples]))
    return Batch(tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous(), mask[:, 1:].contiguous(), indices)


class StepLoader:
    """The micro-batches of this rank for one optimizer step, from the global sample position."""

    def __init__(self, samples: PackedSamples, layout: BatchLayout):
        self.samples = samples
        self.layout = layout

    def step_batches(self, start: int) -> list[Batch]:
        out = []
        for m in range(self.layout.grad_accum):
            idx = self.layout.indices(start, m)
            out.append(collate([self.samples[g] for g in idx], idx))
        return out
