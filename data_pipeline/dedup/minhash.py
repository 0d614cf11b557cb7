"""Fast MinHash signatures, value-for-value compatible with `datasketch.MinHash`.

A `MinHasher` turns a batch of texts into a `(documents, num_perm)` uint32 matrix with numpy: every shingle of
the batch is hashed once (by default from the xxh3 hashes of its words; or its joined bytes with xxh32
or with datasketch's SHA1 hash), pre-mixed and permuted for all permutations in one array operation, and reduced per
document with `np.minimum.reduceat`. With the same seed, scheme and hash function, row i equals
`datasketch.MinHash(num_perm, seed, hashfunc=HASH_FUNCTIONS[hash], scheme=...)` updated with the shingles of text i
(joined bytes, or word tuples for hash="words"); tests/dedup/test_minhash.py checks it value for value.
`optimal_bands_rows` picks the LSH bands x rows for a threshold as datasketch's `MinHashLSH` does; `bucket_groups`,
`first_member_edges` and `verified_edges` turn one band's values into the near_dedup stage's bucket edges.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import xxhash

MERSENNE_PRIME = np.uint64((1 << 61) - 1)  # datasketch's "legacy" scheme
MAX_HASH32 = np.uint64((1 << 32) - 1)
CHUNK_SHINGLES = 8192  # shingles permuted per array operation: 256 x 8192 x 4 bytes = 8 MiB of scratch (measured
# fastest on the 2-core dev box: 2048 took 1.5x as long, the per-call overheads of the small arrays)
HASHES = ("words", "xxh32", "sha1")
SCHEMES = ("affine32", "legacy")
MAX_PERM = 4096  # choosing bands x rows for 4096 takes 3 s and 0.85 GB (16384: 16 s, 3.8 GB); 4 bytes/document each


@dataclass(frozen=True)
class MinHashConfig:
    """Shingling and hashing; the `near_dedup` section (NearDedupConfig) extends it, so its names apply there."""

    ngram_size: int = 5  # words per shingle
    token_pattern: str = "[^A-Za-z_0-9]"  # separators between words
    lowercase: bool = False
    keep_empty_tokens: bool = False  # BigCode's script kept the empty strings between consecutive separators
    num_perm: int = 256
    seed: int = 42
    hash: str = "words"  # shingle hash: "words" (fastest), "xxh32" or "sha1" (datasketch's default hashfunc)
    scheme: str = "affine32"  # datasketch's permutation scheme: "affine32" (its 2.0 default) or "legacy" (pre-2.0)

    def __post_init__(self) -> None:
        if self.ngram_size < 1:
            raise ValueError(f"near_dedup.ngram_size must be >= 1, got {self.ngram_size}")
        if not 1 <= self.num_perm <= MAX_PERM:
            raise ValueError(f"near_dedup.num_perm must be in [1, {MAX_PERM}] (256 is BigCode's), got {self.num_perm}")
        if not 0 <= self.seed < 1 << 32:  # numpy's RandomState draws the permutations
            raise ValueError(f"near_dedup.seed must be in [0, 2**32 - 1], got {self.seed}")
        try:
            re.compile(self.token_pattern)
        except re.error as exc:
            raise ValueError(f"near_dedup.token_pattern={self.token_pattern!r} is not a regular expression: {exc}")
        if self.hash not in HASHES:
            raise ValueError(f"near_dedup.hash must be one of {HASHES}, got {self.hash!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"near_dedup.scheme must be one of {SCHEMES}, got {self.scheme!r}")


def xxh32_hash(data: bytes) -> int:
    """32-bit hash of a joined shingle (hash="xxh32"); pass it to datasketch as `hashfunc` to reproduce ours."""
    return xxhash.xxh32_intdigest(data)


def sha1_hash32(data: bytes) -> int:
    """datasketch's default `hashfunc` (first 4 bytes of SHA1, little-endian), hash="sha1"."""
    return int.from_bytes(hashlib.sha1(data).digest()[:4], "little")


# hash="words": a shingle's hash combines the xxh3-64 hashes of its words (each word hashed once, not once per
# shingle it is in), sum_k h(word_k) * C_k mod 2^64, avalanched by MurmurHash3's fmix64, upper 32 bits kept.
_WORD_WEIGHTS = [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5]
_M64 = (1 << 64) - 1


def words_hash(words: Sequence[bytes]) -> int:
    """hash="words" for one shingle given as its tuple of words (bytes); a datasketch `hashfunc` for
    `MinHash.update(tuple_of_words)` that reproduces our signatures."""
    acc = 0
    for k, word in enumerate(words):
        acc = (acc + xxhash.xxh3_64_intdigest(word) * _word_weight(k)) & _M64
    return int(fmix64(np.array([acc], np.uint64))[0]) >> 32


def _word_weight(k: int) -> int:
    if k < len(_WORD_WEIGHTS):
        return _WORD_WEIGHTS[k]
    return int(fmix64(np.array([k + 1], np.uint64))[0]) | 1  # longer n-grams: more odd weights, a fixed sequence


HASH_FUNCTIONS: dict[str, Callable] = {"words": words_hash, "xxh32": xxh32_hash, "sha1": sha1_hash32}

_DEFAULT_PATTERN = "[^A-Za-z_0-9]"
# Every byte that is not [A-Za-z_0-9] becomes a space; UTF-8 bytes of non-ASCII characters are all >= 0x80 and
# all separators, so translate + split is exactly re.split(_DEFAULT_PATTERN) without the empty words, ~10x faster.
_SEPARATORS_TO_SPACE = bytes(
    c if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 95) else 32 for c in range(256)
)


def tokenize(text: str, token_pattern: str | re.Pattern = _DEFAULT_PATTERN, lowercase: bool = False,
             keep_empty_tokens: bool = False) -> list[bytes]:
    """The words of `text` as UTF-8 bytes, split on `token_pattern` (BigCode: `[^A-Za-z_0-9]`)."""
    if lowercase:
        text = text.lower()
    pattern = token_pattern.pattern if isinstance(token_pattern, re.Pattern) else token_pattern
    if pattern == _DEFAULT_PATTERN and not keep_empty_tokens:
        return text.encode("utf-8", "surrogatepass").translate(_SEPARATORS_TO_SPACE).split()
    splitter = re.compile(token_pattern) if isinstance(token_pattern, str) else token_pattern
    return [t.encode("utf-8", "surrogatepass") for t in splitter.split(text) if keep_empty_tokens or t]


def joined_ngrams(tokens: list[bytes], ngram_size: int) -> set[bytes]:
    if len(tokens) < ngram_size:
        return set()
    if ngram_size == 1:
        return set(tokens)
    return {b" ".join(gram) for gram in zip(*(tokens[i:] for i in range(ngram_size)))}


def fmix64(hv: np.ndarray) -> np.ndarray:
    hv = hv ^ (hv >> np.uint64(33))
    hv = hv * np.uint64(0xFF51AFD7ED558CCD)
    hv = hv ^ (hv >> np.uint64(33))
    hv = hv * np.uint64(0xC4CEB9FE1A85EC53)
    return hv ^ (hv >> np.uint64(33))


def ngram_hashes(word_hashes: np.ndarray, ngram_size: int) -> np.ndarray:
    """hash="words" for every window of `ngram_size` consecutive words (uint32; len - n + 1 values)."""
    n_windows = len(word_hashes) - ngram_size + 1
    if n_windows <= 0:
        return np.empty(0, np.uint32)
    acc = np.zeros(n_windows, np.uint64)
    for k in range(ngram_size):
        acc += word_hashes[k : k + n_windows] * np.uint64(_word_weight(k))
    return (fmix64(acc) >> np.uint64(32)).astype(np.uint32)


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
        pairs = [(gen.randint(1, MERSENNE_PRIME, dtype=np.uint64), gen.randint(0, MERSENNE_PRIME, dtype=np.uint64))
                 for _ in range(num_perm)]
        ab = np.array(pairs, dtype=np.uint64).T
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
    shingle_counts: np.ndarray  # int64 [documents]: shingle hashes per document (hash="words": repeats included)


class MinHasher:
    """Shingles and MinHash signatures for batches of documents, configured by a `MinHashConfig`."""

    def __init__(self, cfg: MinHashConfig | None = None):
        self.cfg = cfg or MinHashConfig()
        self._pattern = re.compile(self.cfg.token_pattern)
        self.a, self.b = datasketch_permutations(self.cfg.num_perm, self.cfg.seed, self.cfg.scheme)
        self._legacy = self.cfg.scheme == "legacy"

    @property
    def num_perm(self) -> int:
        return self.cfg.num_perm

    def tokens(self, text: str) -> list[bytes]:
        c = self.cfg
        return tokenize(text, self._pattern, c.lowercase, c.keep_empty_tokens)

    def shingles(self, text: str) -> set[str]:
        """The distinct shingles of `text` (words joined by a space); empty when it has fewer words than n."""
        return {g.decode("utf-8", "surrogatepass") for g in joined_ngrams(self.tokens(text), self.cfg.ngram_size)}

    def shingle_hashes(self, text: str) -> np.ndarray:
        """32-bit hashes of the shingles of `text` (uint32, possibly repeated; empty without shingles)."""
        tokens, n = self.tokens(text), self.cfg.ngram_size
        if len(tokens) < n:
            return np.empty(0, np.uint32)
        if self.cfg.hash == "words":
            words = np.fromiter(map(xxhash.xxh3_64_intdigest, tokens), np.uint64, len(tokens))
            return ngram_hashes(words, n)
        grams = joined_ngrams(tokens, n)
        return np.fromiter(map(HASH_FUNCTIONS[self.cfg.hash], grams), np.uint32, len(grams))

    def signature(self, text: str) -> np.ndarray | None:
        """Signature of one text, or None when it has no shingles."""
        batch = self.signatures([text])
        return batch.signatures[0] if batch.has_shingles[0] else None

    def signatures(self, texts: Sequence[str]) -> SignatureBatch:
        hashes = [self.shingle_hashes(t) for t in texts]
        counts = np.fromiter(map(len, hashes), np.int64, len(hashes))
        has = counts > 0
        if not has.any():
            return SignatureBatch(np.empty((0, self.num_perm), np.uint32), has, counts)
        # Repeated shingles are not removed: min() ignores them, and a sort costs more than permuting the few repeats.
        starts = np.concatenate([[0], np.cumsum(counts[has])[:-1]]).astype(np.int64)
        return SignatureBatch(self._reduce(np.concatenate(hashes), starts), has, counts)

    def permute(self, hv: np.ndarray) -> np.ndarray:
        """Permuted hash values, permutation-major: shape [num_perm, len(hv)], as datasketch computes them."""
        if self._legacy:
            # uint64 arithmetic wraps exactly as in datasketch, so the legacy values match bit for bit.
            phv = (self.a[:, None] * hv.astype(np.uint64)[None, :] + self.b[:, None]) % MERSENNE_PRIME
            return (phv & MAX_HASH32).astype(np.uint32)
        phv = np.multiply(self.a[:, None], fmix32(hv)[None, :])
        phv += self.b[:, None]
        return phv

    def _reduce(self, all_hv: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Per-document minimum of the permuted hashes, CHUNK_SHINGLES shingles at a time. The reduction runs
        along the contiguous axis (permutation-major layout), which is what makes `reduceat` fast."""
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
            mins = np.minimum.reduceat(self.permute(all_hv[lo:hi]), seg, axis=1)
            np.minimum(out[first:last], mins.T, out=out[first:last])
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


def collision_probability(similarity: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """Probability that two documents with Jaccard `similarity` share at least one band: 1 - (1 - s^r)^b."""
    return 1.0 - (1.0 - np.power(similarity, rows)) ** bands


@lru_cache(maxsize=64)
def optimal_bands_rows(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                       false_negative_weight: float = 0.5) -> tuple[int, int]:
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


# LSH band buckets (the near_dedup stage's `buckets` step): documents whose band values are equal are candidates.
_MIX = np.uint64(0x9E3779B97F4A7C15)


def band_partition(band_values: np.ndarray, partitions: int) -> np.ndarray:
    """Partition (0..partitions-1) of each band, from a cheap multiplicative hash of its values."""
    h = np.zeros(len(band_values), dtype=np.uint64)
    for col in band_values.T:
        h = (h ^ col.astype(np.uint64)) * _MIX
        h ^= h >> np.uint64(29)
    return (h % np.uint64(partitions)).astype(np.int64)


def bucket_groups(band_values: np.ndarray, doc_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Documents of the buckets holding two or more, grouped by bucket: (members, bucket id per member).

    Buckets are runs of equal band values after a stable bytewise sort; `doc_index` must be increasing, so each
    bucket lists its documents in input order (its first member is its smallest)."""
    if len(doc_index) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rows = np.ascontiguousarray(band_values)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts_new = np.ones(len(order), dtype=bool)
    starts_new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    bucket = np.cumsum(starts_new) - 1
    shared = np.bincount(bucket)[bucket] >= 2
    return doc_index[order][shared], bucket[shared]


def _first_of_bucket(members: np.ndarray, bucket: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(whether each member is its bucket's first, the first member of each member's bucket)."""
    is_first = np.ones(len(members), dtype=bool)
    is_first[1:] = bucket[1:] != bucket[:-1]
    return is_first, members[is_first][np.cumsum(is_first) - 1]


def first_member_edges(members: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """BigCode's rule (verify_jaccard=false): every member of a bucket is linked to the bucket's first member."""
    if len(members) == 0:
        return np.empty((0, 2), np.int64)
    is_first, first = _first_of_bucket(members, bucket)
    return np.stack([members[~is_first], first[~is_first]], axis=1)


def verified_edges(members: np.ndarray, bucket: np.ndarray, estimate: Callable[[np.ndarray, np.ndarray], np.ndarray],
                   threshold: float, max_rounds: int = 16) -> tuple[np.ndarray, int]:
    """Edges (member, representative) whose MinHash estimate reaches `threshold`, and how many members were still
    unchecked after `max_rounds` (left unlinked in this band).

    Sharing a band only makes two documents candidates (at Jaccard 0.6 they share one of 25 x 10 with probability
    0.14). A member failing against its bucket's representative stays and is checked against the next
    representative (the first of those left), round after round. `members` are grouped by `bucket` and increasing
    inside each bucket, so a representative is always the smallest index still unlinked in its bucket."""
    parts = [np.empty((0, 2), np.int64)]
    for _ in range(max_rounds):
        if len(members) < 2:
            return np.concatenate(parts), 0
        is_first, rep = _first_of_bucket(members, bucket)
        cand = np.flatnonzero(~is_first)
        if len(cand) == 0:
            return np.concatenate(parts), 0
        ok = estimate(members[cand], rep[cand]) >= threshold
        parts.append(np.stack([members[cand[ok]], rep[cand[ok]]], axis=1))
        members, bucket = members[cand[~ok]], bucket[cand[~ok]]
    left = len(members) - int(np.count_nonzero(np.r_[True, bucket[1:] != bucket[:-1]])) if len(members) else 0
    return np.concatenate(parts), left
