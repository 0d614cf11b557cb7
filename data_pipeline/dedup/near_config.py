"""Configuration of MinHash near-deduplication (`near_dedup.*`) and the LSH band/row math.

Defaults follow BigCode's recipe (REFACT-1.6B.md, "Near-deduplication as BigCode did it"): word 5-grams split on
`[^A-Za-z_0-9]`, 256 permutations, Jaccard threshold 0.7, which the false-positive/false-negative trade-off below
turns into 25 bands x 10 rows. The YAML is `configs/pipeline/near_dedup/default.yaml`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from data_pipeline.config_check import config_from_dict

HASHES = ("words", "xxh32", "sha1")
SCHEMES = ("affine32", "legacy")


@dataclass(frozen=True)
class NearDedupConfig:
    enabled: bool = True
    ngram_size: int = 5  # words per shingle
    token_pattern: str = "[^A-Za-z_0-9]"  # separators between words
    lowercase: bool = False
    keep_empty_tokens: bool = False  # BigCode's script kept the empty strings between consecutive separators
    num_perm: int = 256
    seed: int = 42
    hash: str = "words"  # shingle hash: "words" (fastest), "xxh32" or "sha1" (datasketch's default hashfunc)
    scheme: str = "affine32"  # datasketch's permutation scheme: "affine32" (its 2.0 default) or "legacy" (pre-2.0)
    threshold: float = 0.7
    bands: int | None = None  # None: chosen from threshold and num_perm (with rows)
    rows: int | None = None
    false_positive_weight: float = 0.5
    false_negative_weight: float = 0.5
    verify_jaccard: bool = True  # link bucket members only when their signature estimate >= threshold
    bucket_partitions: int = 1  # split each band's buckets by key: memory of one bucket unit / partitions
    batch_size: int = 256  # documents hashed together
    report_clusters: int = 10  # largest clusters listed in stats, with example ids and paths
    report_examples: int = 5  # members shown per listed cluster

    def __post_init__(self) -> None:
        if self.ngram_size < 1:
            raise ValueError(f"near_dedup.ngram_size must be >= 1, got {self.ngram_size}")
        if self.num_perm < 1:
            raise ValueError(f"near_dedup.num_perm must be >= 1, got {self.num_perm}")
        if self.hash not in HASHES:
            raise ValueError(f"near_dedup.hash must be one of {HASHES}, got {self.hash!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"near_dedup.scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"near_dedup.threshold must be in (0, 1), got {self.threshold}")
        if (self.bands is None) != (self.rows is None):
            raise ValueError("near_dedup.bands and near_dedup.rows must be set together (or both left null)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"near_dedup.bands x rows = {self.bands} x {self.rows} exceeds num_perm={self.num_perm}"
            )
        if self.bucket_partitions < 1:
            raise ValueError(f"near_dedup.bucket_partitions must be >= 1, got {self.bucket_partitions}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "NearDedupConfig":
        return config_from_dict(cls, data, "near_dedup")

    @property
    def band_rows(self) -> tuple[int, int]:
        """(bands, rows) used for LSH: explicit, or optimal for threshold/num_perm."""
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        return optimal_bands_rows(
            self.threshold, self.num_perm, self.false_positive_weight, self.false_negative_weight
        )


def collision_probability(similarity: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """Probability that two documents with Jaccard `similarity` share at least one band: 1 - (1 - s^r)^b."""
    return 1.0 - (1.0 - np.power(similarity, rows)) ** bands


@lru_cache(maxsize=64)
def optimal_bands_rows(
    threshold: float, num_perm: int, false_positive_weight: float = 0.5, false_negative_weight: float = 0.5
) -> tuple[int, int]:
    """The (bands, rows) with bands x rows <= num_perm minimising the weighted false-positive area (similarity
    below the threshold yet colliding) plus false-negative area (above it yet never colliding), as datasketch's
    `MinHashLSH` and BigCode's script choose them; (0.7, 256) gives (25, 10)."""
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=float)
    bands, rows = pairs[:, :1], pairs[:, 1:]
    below = np.linspace(0.0, threshold, 1001)
    above = np.linspace(threshold, 1.0, 1001)
    fp = np.trapezoid(collision_probability(below[None, :], bands, rows), below, axis=1)
    fn = np.trapezoid(1.0 - collision_probability(above[None, :], bands, rows), above, axis=1)
    best = int(np.argmin(false_positive_weight * fp + false_negative_weight * fn))  # first minimum, like datasketch
    return int(pairs[best, 0]), int(pairs[best, 1])
