"""Chat SFT samples in the release's chat format (data_pipeline/tokenizer.py), with the loss on the assistant turns only.

Input: JSONL files, one `{"messages": [{"role", "content"}, ...]}` per line.
One conversation per sample, truncated or padded with <fim_pad> (no loss) to seq_len + 1 tokens.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.tokenizer import encode_chat
from refact_train.data import sample_at


def read_conversations(path: str | Path) -> list[list[dict]]:
    files = sorted(Path(path).glob("*.jsonl")) if Path(path).is_dir() else [Path(path)]
    out = []
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line)["messages"])
            except (ValueError, KeyError) as e:
                raise ValueError(f"{f}:{n}: expected a JSON object with 'messages' ({e})") from e
    if not out:
        raise ValueError(f"no conversations in {path} (expected *.jsonl with one {{'messages': [...]}} per line)")
    return out


class ChatSamples:
    """Same interface as `data.PackedSamples`: global sample index g -> (tokens[L+1], loss_mask[L+1])."""

    def __init__(self, path: str | Path, tokenizer: Any, seq_len: int, seed: int):
        self.conversations = [encode_chat(c, tokenizer) for c in read_conversations(path)]
        self.n_samples = len(self.conversations)
        self.seq_len, self.seed, self.pad_id = seq_len, seed, tokenizer.fim_pad_id

    def __getitem__(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = self.conversations[sample_at(self.seed, g, self.n_samples)]
        n = self.seq_len + 1
        tokens = np.full(n, self.pad_id, dtype=np.int64)
        loss_mask = np.zeros(n, dtype=bool)
        k = min(n, len(ids))
        tokens[:k] = ids[:k]
        loss_mask[:k] = mask[:k]
        return tokens, loss_mask
