"""Fast MinHash signatures, value-for-value compatible with `datasketch.MinHash`.

A `MinHasher` turns a batch of texts into a `(documents, num_perm)` uint32 matrix with numpy: every shingle of the
batch is hashed once (xxh32 or datasketch's SHA1 hash), pre-mixed and permuted for all permutations in one array
operation, and reduced per document with `np.minimum.reduceat`. With the same seed, permutation scheme and hash
function, row i equals `datasketch.MinHash(num_perm, seed, hashfunc=..., scheme=...)` updated with the shingles of
text i (tests/dedup/test_minhash.py checks it value for value).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import xxhash

from data_pipeline.dedup.near_config import NearDedupConfig

MERSENNE_PRIME = np.uint64((1 << 61) - 1)  # datasketch's "legacy" scheme
MAX_HASH32 = np.uint64((1 << 32) - 1)
CHUNK_SHINGLES = 4096  # shingles permuted per array operation: 4096 x 256 x 4 bytes = 4 MiB of scratch


def xxh32_hash(data: bytes) -> int:
    """32-bit shingle hash used by default; pass it to datasketch as `hashfunc` to reproduce our signatures."""
    return xxhash.xxh32_intdigest(data)


def sha1_hash32(data: bytes) -> int:
    """datasketch's default `hashfunc` (first 4 bytes of SHA1, little-endian)."""
    return int.from_bytes(hashlib.sha1(data).digest()[:4], "little")


HASH_FUNCTIONS: dict[str, Callable[[bytes], int]] = {"xxh32": xxh32_hash, "sha1": sha1_hash32}


def word_shingles(
    text: str,
    ngram_size: int = 5,
    token_pattern: str | re.Pattern = "[^A-Za-z_0-9]",
    lowercase: bool = False,
    keep_empty_tokens: bool = False,
) -> set[str]:
    """The set of word n-grams of `text` (words joined by one space); empty when it has fewer than n words."""
    splitter = re.compile(token_pattern) if isinstance(token_pattern, str) else token_pattern
    tokens = splitter.split(text.lower() if lowercase else text)
    if not keep_empty_tokens:
        tokens = [t for t in tokens if t]
    if len(tokens) < ngram_size:
        return set()
    if ngram_size == 1:
        return set(tokens)
    return {" ".join(gram) for gram in zip(*(tokens[i:] for i in range(ngram_size)))}


def fmix32(hv: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before the affine permutations."""
    hv = hv ^ (hv >> np.uint32(16))
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    return hv ^ (hv >> np.uint32(16))


def datasketch_permutations(num_perm: int, seed: int, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """The permutation parameters (a, b) that `datasketch.MinHash(num_perm, seed, scheme=...)` draws."""
    gen = np.random.RandomState(seed)
    if scheme == "legacy":
        ab = np.array(
            [
                (gen.randint(1, MERSENNE_PRIME, dtype=np.uint64), gen.randint(0, MERSENNE_PRIME, dtype=np.uint64))
                for _ in range(num_perm)
            ],
            dtype=np.uint64,
        ).T
        return ab[0], ab[1]
    if scheme == "affine32":
        a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        return a, b
    raise ValueError(f"unknown MinHash scheme {scheme!r}; use 'affine32' or 'legacy'")


@dataclass
class SignatureBatch:
    """Signatures of the documents of a batch that have shingles, and which documents those are."""

    signatures: np.ndarray  # uint32 [documents with shingles, num_perm]
    has_shingles: np.ndarray  # bool [documents]
    shingle_counts: np.ndarray  # int64 [documents]: distinct shingles per document


class MinHasher:
    """Shingles and MinHash signatures for batches of documents, configured by `NearDedupConfig`."""

    def __init__(self, cfg: NearDedupConfig | None = None):
        self.cfg = cfg or NearDedupConfig()
        self._splitter = re.compile(self.cfg.token_pattern)
        self._hash = HASH_FUNCTIONS[self.cfg.hash]
        self.a, self.b = datasketch_permutations(self.cfg.num_perm, self.cfg.seed, self.cfg.scheme)
        self._legacy = self.cfg.scheme == "legacy"

    @property
    def num_perm(self) -> int:
        return self.cfg.num_perm

    def shingles(self, text: str) -> set[str]:
        c = self.cfg
        return word_shingles(text, c.ngram_size, self._splitter, c.lowercase, c.keep_empty_tokens)

    def hash_shingles(self, shingles: Sequence[str] | set[str]) -> np.ndarray:
        """32-bit hashes of shingles (UTF-8 bytes), as datasketch's hashfunc sees them."""
        h = self._hash
        return np.fromiter((h(s.encode("utf-8", "surrogatepass")) for s in shingles), np.uint32, len(shingles))

    def signature(self, text: str) -> np.ndarray | None:
        """Signature of one text, or None when it has no shingles."""
        batch = self.signatures([text])
        return batch.signatures[0] if batch.has_shingles[0] else None

    def signatures(self, texts: Sequence[str]) -> SignatureBatch:
        hashes = [self.hash_shingles(self.shingles(t)) for t in texts]
        counts = np.fromiter((len(h) for h in hashes), np.int64, len(hashes))
        has = counts > 0
        nonempty = [h for h in hashes if len(h)]
        if not nonempty:
            return SignatureBatch(np.empty((0, self.num_perm), np.uint32), has, counts)
        all_hv = np.concatenate(nonempty)
        starts = np.concatenate([[0], np.cumsum(counts[has])[:-1]])
        return SignatureBatch(self._reduce(all_hv, starts), has, counts)

    def permute(self, hv: np.ndarray) -> np.ndarray:
        """Permuted hash values, shape [len(hv), num_perm], as datasketch computes them (values < 2^32)."""
        if self._legacy:
            # uint64 arithmetic wraps exactly as in datasketch, so the legacy values match bit for bit.
            phv = (hv.astype(np.uint64)[:, None] * self.a + self.b) % MERSENNE_PRIME
            return (phv & MAX_HASH32).astype(np.uint32)
        phv = np.multiply(fmix32(hv)[:, None], self.a)
        phv += self.b
        return phv

    def _reduce(self, all_hv: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Per-document minimum of the permuted hashes, CHUNK_SHINGLES shingles at a time."""
        n_docs, total = len(starts), len(all_hv)
        ends = np.append(starts[1:], total)
        out = np.full((n_docs, self.num_perm), np.iinfo(np.uint32).max, np.uint32)
        lo = 0
        while lo < total:
            hi = min(total, lo + CHUNK_SHINGLES)
            # Documents overlapping [lo, hi); segment starts clipped to the chunk.
            first = int(np.searchsorted(ends, lo, side="right"))
            last = int(np.searchsorted(starts, hi, side="left"))
            seg = np.maximum(starts[first:last], lo) - lo
            mins = np.minimum.reduceat(self.permute(all_hv[lo:hi]), seg, axis=0)
            np.minimum(out[first:last], mins, out=out[first:last])
            lo = hi
        return out


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """MinHash estimate of the Jaccard similarity: the share of equal signature values."""
    return float(np.count_nonzero(sig_a == sig_b)) / len(sig_a)


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
