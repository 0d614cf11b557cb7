"""Optional check of LSH candidates against the full signatures (`near_dedup.verify_jaccard`).

Two documents that share one band are only candidates: at Jaccard 0.6 they still share a band with probability
0.14 under 25 x 10. With verification a member of a bucket is linked to the bucket's representative only when
their 256-value MinHash estimate reaches the threshold; members that fail stay in the bucket and are checked against
the next representative (the first of them), round after round. It needs no text, only the signature files.
Turned off, buckets link every member to the first one, exactly as BigCode's script does.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from data_pipeline.dedup.near_files import signature_path, split_index
from data_pipeline.stage import StageContext

EstimateFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
GATHER_CHUNK = 65536  # edges compared at once: 2 x 65536 x 1 KiB of signatures


class SignatureLookup:
    """Signatures of documents by global index, read through memory maps of the signature files."""

    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self._maps: dict[int, np.ndarray] = {}

    def gather(self, index: np.ndarray) -> np.ndarray:
        shards, rows = split_index(index)
        out = None
        for shard in np.unique(shards):
            sigs = self._maps.get(int(shard))
            if sigs is None:
                sigs = self._maps[int(shard)] = np.load(signature_path(self.ctx, int(shard)), mmap_mode="r")
            if out is None:
                out = np.empty((len(index), sigs.shape[1]), np.uint32)
            mine = np.flatnonzero(shards == shard)
            order = np.argsort(rows[mine], kind="stable")  # read the memory map in row order
            out[mine[order]] = sigs[rows[mine][order]]
        return out if out is not None else np.empty((0, 0), np.uint32)

    def estimate(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Estimated Jaccard of documents a[i] and b[i]: the share of equal signature values."""
        out = np.empty(len(a), np.float64)
        for lo in range(0, len(a), GATHER_CHUNK):
            hi = lo + GATHER_CHUNK
            out[lo:hi] = (self.gather(a[lo:hi]) == self.gather(b[lo:hi])).mean(axis=1)
        return out


def verified_edges(
    members: np.ndarray, bucket: np.ndarray, estimate: EstimateFn, threshold: float, max_rounds: int = 16
) -> tuple[np.ndarray, int]:
    """Edges (member, representative) whose estimate reaches `threshold`, and how many members were still
    unchecked after `max_rounds` (left unlinked in this band).

    `members` are grouped by `bucket` and increasing inside each bucket, so a representative is always the
    smallest index still unlinked in its bucket."""
    parts = [np.empty((0, 2), np.int64)]
    for _ in range(max_rounds):
        if len(members) < 2:
            return np.concatenate(parts), 0
        is_first = np.ones(len(members), dtype=bool)
        is_first[1:] = bucket[1:] != bucket[:-1]
        rep = members[is_first][np.cumsum(is_first) - 1]
        cand = np.flatnonzero(~is_first)
        if len(cand) == 0:
            return np.concatenate(parts), 0
        ok = estimate(members[cand], rep[cand]) >= threshold
        parts.append(np.stack([members[cand[ok]], rep[cand[ok]]], axis=1))
        rejected = cand[~ok]
        members, bucket = members[rejected], bucket[rejected]
    left = len(members) - int(np.count_nonzero(np.r_[True, bucket[1:] != bucket[:-1]])) if len(members) else 0
    return np.concatenate(parts), left
