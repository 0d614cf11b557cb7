"""Pack tokenized documents into flat shard files: each document's tokens, then one EOT; a start index per shard.

The files follow api.md ("Token shards"): `<split>-NNNNN.bin` (raw ids) and `<split>-NNNNN.idx.npy` (int64 document
start offsets, length documents + 1, the last equal to the number of tokens). A shard is written under a temporary
name and renamed when complete; a document never straddles two shards.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from data_pipeline.config_check import config_from_dict


@dataclass(frozen=True)
class ShardConfig:
    max_tokens_per_shard: int = 1 << 28  # 512 MiB per file at uint16; a longer document gets a shard of its own
    shuffle: bool = True  # shuffle the train documents (mixture.seed): repeats and kinds spread through the stream

    def __post_init__(self) -> None:
        if self.max_tokens_per_shard < 1:
            raise ValueError(f"shards.max_tokens_per_shard must be >= 1, got {self.max_tokens_per_shard}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ShardConfig":
        return config_from_dict(cls, values, "shards")


@dataclass(frozen=True)
class ShardInfo:
    file: str
    index: str
    tokens: int
    documents: int

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "index": self.index, "tokens": self.tokens, "documents": self.documents}


class ShardWriter:
    """Appends documents to `<split>-NNNNN.bin` files of at most `max_tokens` tokens each."""

    def __init__(self, directory: str | Path, split: str, dtype: Any, eot_id: int, max_tokens: int):
        self.directory = Path(directory)
        self.split = split
        self.dtype = np.dtype(dtype)
        self.eot_id = eot_id
        self.max_tokens = max_tokens
        self.shards: list[ShardInfo] = []
        self._file = None
        self._offsets: list[int] = []
        self._tokens = 0
        self._eot = np.array([eot_id], dtype=self.dtype)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _name(self, suffix: str) -> str:
        return f"{self.split}-{len(self.shards):05d}{suffix}"

    def _open(self) -> None:
        self._file = open(self.directory / (self._name(".bin") + ".tmp"), "wb")
        self._offsets, self._tokens = [], 0

    def _finish(self) -> None:
        if self._file is None:
            return
        self._file.close()
        self._file = None
        bin_name, idx_name = self._name(".bin"), self._name(".idx.npy")
        offsets = np.asarray([*self._offsets, self._tokens], dtype=np.int64)
        with open(self.directory / (idx_name + ".tmp"), "wb") as f:
            np.save(f, offsets)
        os.replace(self.directory / (bin_name + ".tmp"), self.directory / bin_name)
        os.replace(self.directory / (idx_name + ".tmp"), self.directory / idx_name)
        self.shards.append(ShardInfo(bin_name, idx_name, self._tokens, len(self._offsets)))

    def add(self, tokens: np.ndarray) -> None:
        """One document's tokens, without EOT; the writer appends the EOT."""
        n = len(tokens) + 1
        if self._file is not None and self._offsets and self._tokens + n > self.max_tokens:
            self._finish()
        if self._file is None:
            self._open()
        self._offsets.append(self._tokens)
        self._file.write(np.asarray(tokens, dtype=self.dtype).tobytes())
        self._file.write(self._eot.tobytes())
        self._tokens += n

    def close(self) -> list[ShardInfo]:
        self._finish()
        return list(self.shards)

    @property
    def documents(self) -> int:
        return sum(s.documents for s in self.shards) + len(self._offsets)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.shards) + self._tokens
