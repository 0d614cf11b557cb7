"""MinHasher signatures equal datasketch's value for value; shingling follows BigCode's word 5-grams."""
import random
import re
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash

from data_pipeline.dedup.minhash import (
    HASH_FUNCTIONS,
    MinHashConfig,
    MinHasher,
    estimate_jaccard,
    jaccard,
    tokenize,
)
from data_pipeline.dedup.near_dedup import NearDedupConfig

STDLIB = Path(random.__file__).parent
TEXTS = [(STDLIB / name).read_text() for name in ("random.py", "bisect.py", "heapq.py")]


def datasketch_signature(text: str, cfg: NearDedupConfig) -> np.ndarray:
    """The straightforward datasketch loop over the shingles of `text`, with our hash function as `hashfunc`."""
    m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme=cfg.scheme, hashfunc=HASH_FUNCTIONS[cfg.hash])
    words = [w.encode() for w in re.split(cfg.token_pattern, text) if w]
    n = cfg.ngram_size
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        m.update(gram if cfg.hash == "words" else b" ".join(gram))  # "words" hashes the word tuple
    return m.hashvalues.astype(np.uint32)


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("hash_name", ["words", "xxh32", "sha1"])
def test_signatures_equal_datasketch(scheme, hash_name):
    cfg = NearDedupConfig(scheme=scheme, hash=hash_name, num_perm=256, seed=7)
    hasher = MinHasher(cfg)
    texts = TEXTS + ["too short", "café naïve résumé unicode words here, there: ok"]
    batch = hasher.signatures(texts)
    assert batch.has_shingles.tolist() == [True, True, True, False, True]
    for row, text in zip(batch.signatures, [t for t, h in zip(texts, batch.has_shingles) if h]):
        np.testing.assert_array_equal(row, datasketch_signature(text, cfg))


def test_default_hashfunc_matches_datasketch_default():
    """hash=sha1 with scheme affine32 is exactly `MinHash(num_perm=256, seed=...)` with no hashfunc given."""
    cfg = NearDedupConfig(hash="sha1")
    hasher = MinHasher(cfg)
    m = MinHash(num_perm=256, seed=cfg.seed)
    for s in hasher.shingles(TEXTS[1]):
        m.update(s.encode())
    np.testing.assert_array_equal(hasher.signature(TEXTS[1]), m.hashvalues)


def test_large_document_spans_chunks():
    """A document with more shingles than one permutation chunk gives the same signature alone and in a batch."""
    big = " ".join(f"tok{i}" for i in range(10000))
    hasher = MinHasher()
    alone = hasher.signature(big)
    batch = hasher.signatures([TEXTS[0], big, TEXTS[2]])
    np.testing.assert_array_equal(batch.signatures[1], alone)
    np.testing.assert_array_equal(alone, datasketch_signature(big, hasher.cfg))


def test_fast_tokenizer_equals_regex_split():
    """The default pattern's byte-translate fast path gives exactly BigCode's re.split without empty words."""
    for text in TEXTS + ["naïve café — x_1=ß€2\tz\u2028y", "", "   ", "\udcff lone surrogate a"]:
        expected = [w.encode("utf-8", "surrogatepass") for w in re.split("[^A-Za-z_0-9]", text) if w]
        assert tokenize(text) == expected
        assert tokenize(text, re.compile("[^A-Za-z_0-9]")) == expected


def test_word_shingles_bigcode_split():
    text = "def foo(bar_1, baz):\n    return bar_1+baz  # sum"
    words = ["def", "foo", "bar_1", "baz", "return", "bar_1", "baz", "sum"]
    expected = {" ".join(words[i : i + 5]) for i in range(len(words) - 4)}
    assert MinHasher(MinHashConfig(ngram_size=5)).shingles(text) == expected
    assert MinHasher(MinHashConfig(ngram_size=5)).shingles("a b c d") == set()  # fewer words than n: no shingles
    assert MinHasher(MinHashConfig(ngram_size=5)).shingles("") == set()
    # BigCode's script kept empty words between consecutive separators; the option reproduces that.
    assert MinHasher(MinHashConfig(ngram_size=3, keep_empty_tokens=True)).shingles("a, b c") == {"a  b", " b c"}
    assert MinHasher(MinHashConfig(ngram_size=5, lowercase=True)).shingles("A b C d E") == {"a b c d e"}


def test_estimate_close_to_true_jaccard():
    rng = random.Random(1)
    hasher = MinHasher()
    words = [f"w{rng.randrange(10**6)}" for _ in range(2000)]
    errors = []
    for keep in (1.0, 0.9, 0.7, 0.5, 0.2):
        other = [w if rng.random() < keep else f"x{rng.randrange(10**6)}" for w in words]
        a, b = " ".join(words), " ".join(other)
        true = jaccard(hasher.shingles(a), hasher.shingles(b))
        errors.append(abs(estimate_jaccard(hasher.signature(a), hasher.signature(b)) - true))
    # 256 permutations: standard error <= 0.032; 0.1 is > 3 sigma.
    assert max(errors) < 0.1, errors
