"""MinHash signatures per second on one core, 256 permutations: ours vs datasketch (and rensa when installed).

Every method shingles and signs the same real documents (Python standard-library sources) in the same process;
the ratio is against the straightforward datasketch loop, `MinHash(num_perm=256)` with `.update()` per shingle.
Also checks that the estimated Jaccard of known pairs (a file and mutated copies of it) agrees with datasketch.

    python bench/minhash_speed.py [--docs 150] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: no threaded numpy kernels

import random
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from datasketch import MinHash

from common import best_time
from data_pipeline.dedup.minhash import HASH_FUNCTIONS, MinHasher, estimate_jaccard, jaccard, tokenize, xxh32_hash
from data_pipeline.dedup.near_dedup import NearDedupConfig

SEED = 42
NUM_PERM = 256


def stdlib_documents(n: int, min_bytes: int = 2000, max_bytes: int = 60000) -> list[str]:
    root = Path(random.__file__).parent
    files = sorted(p for p in root.rglob("*.py") if "test" not in p.parts and "site-packages" not in p.parts)
    texts = []
    for path in random.Random(0).sample(files, len(files)):
        text = path.read_text(errors="replace")
        if min_bytes <= len(text.encode()) <= max_bytes:
            texts.append(text)
        if len(texts) == n:
            break
    return texts


def datasketch_loop(texts, shingle) -> list[np.ndarray]:
    out = []
    for text in texts:
        m = MinHash(num_perm=NUM_PERM, seed=SEED)
        for s in shingle(text):
            m.update(s.encode("utf-8"))
        out.append(m.hashvalues)
    return out


def datasketch_batch(texts, shingle, hashfunc=None) -> list[np.ndarray]:
    out = []
    for text in texts:
        m = MinHash(num_perm=NUM_PERM, seed=SEED, **({"hashfunc": hashfunc} if hashfunc else {}))
        m.update_batch([s.encode("utf-8") for s in shingle(text)])
        out.append(m.hashvalues)
    return out


def ours(hasher: MinHasher, texts, batch: int = 256) -> list[np.ndarray]:
    out = []
    for i in range(0, len(texts), batch):
        result = hasher.signatures(texts[i : i + batch])
        rows = iter(result.signatures)
        out.extend(next(rows) if has else None for has in result.has_shingles)
    return out


def rensa_signatures(texts, shingle, cls_name: str):
    import rensa

    cls = getattr(rensa, cls_name)
    out = []
    for text in texts:
        m = cls(num_perm=NUM_PERM, seed=SEED)
        m.update(list(shingle(text)))
        out.append(m)
    return out


def mutate(text: str, rng: random.Random, keep: float) -> str:
    words = text.split(" ")
    return " ".join(w if rng.random() < keep else f"m{rng.randrange(10**9)}" for w in words)


def datasketch_reference(text: str, cfg: NearDedupConfig) -> np.ndarray:
    """datasketch's MinHash over the shingles of `text` with our hash function as its `hashfunc`."""
    m = MinHash(num_perm=NUM_PERM, seed=SEED, hashfunc=HASH_FUNCTIONS[cfg.hash])
    words = tokenize(text)
    for i in range(len(words) - cfg.ngram_size + 1):
        gram = tuple(words[i : i + cfg.ngram_size])
        m.update(gram if cfg.hash == "words" else b" ".join(gram))
    return m.hashvalues


def jaccard_check(texts: list[str]) -> dict[str, float]:
    """Estimated Jaccard on (file, mutated copy) pairs: ours vs datasketch given the same hash function (must be
    equal), ours vs datasketch's default SHA1 hash (independent hashes: equal up to sampling noise), and the error
    against the exact Jaccard of the shingle sets."""
    rng = random.Random(1)
    hashers = {name: MinHasher(NearDedupConfig(hash=name, seed=SEED)) for name in HASH_FUNCTIONS}
    same_hash, cross_hash, vs_true = [], [], []
    for text in texts[:25]:
        for keep in (0.98, 0.9, 0.8, 0.6):
            other = mutate(text, rng, keep)
            if not hashers["words"].shingles(text) or not hashers["words"].shingles(other):
                continue
            default = datasketch_loop([text, other], hashers["sha1"].shingles)
            default_est = float(np.mean(default[0] == default[1]))
            true = jaccard(hashers["words"].shingles(text), hashers["words"].shingles(other))
            for name, hasher in hashers.items():
                ours_est = estimate_jaccard(hasher.signature(text), hasher.signature(other))
                ref = [datasketch_reference(t, hasher.cfg) for t in (text, other)]
                same_hash.append(abs(ours_est - float(np.mean(ref[0] == ref[1]))))
                if name == "words":
                    cross_hash.append(abs(ours_est - default_est))
                    vs_true.append(abs(ours_est - true))
    return {
        "pairs": len(cross_hash),
        "max_diff_same_hash": max(same_hash),
        "max_diff_words_vs_datasketch_default": max(cross_hash),
        "mean_diff_words_vs_datasketch_default": float(np.mean(cross_hash)),
        "max_error_words_vs_true_jaccard": max(vs_true),
        "mean_error_words_vs_true_jaccard": float(np.mean(vs_true)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    texts = stdlib_documents(args.docs)
    shingler = MinHasher(NearDedupConfig(seed=SEED))
    n_shingles = sum(len(shingler.shingles(t)) for t in texts)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"{len(texts)} stdlib files, {mb:.2f} MB, {n_shingles} distinct word 5-grams, num_perm={NUM_PERM}, one core")

    methods: list[tuple[str, Callable[[], object], int]] = [
        ("datasketch MinHash.update loop (baseline)", lambda: datasketch_loop(texts, shingler.shingles), 1),
        ("datasketch update_batch (sha1)", lambda: datasketch_batch(texts, shingler.shingles), args.repeats),
        ("datasketch update_batch (xxh32)",
         lambda: datasketch_batch(texts, shingler.shingles, xxh32_hash), args.repeats),
        ("ours MinHasher hash=sha1", lambda: ours(MinHasher(NearDedupConfig(hash="sha1", seed=SEED)), texts),
         args.repeats),
        ("ours MinHasher hash=xxh32", lambda: ours(MinHasher(NearDedupConfig(hash="xxh32", seed=SEED)), texts),
         args.repeats),
        ("ours MinHasher hash=words (default)", lambda: ours(MinHasher(NearDedupConfig(seed=SEED)), texts),
         args.repeats),
    ]
    try:
        import rensa  # noqa: F401

        methods += [
            (f"rensa {name}", (lambda name=name: rensa_signatures(texts, shingler.shingles, name)), args.repeats)
            for name in ("RMinHash", "CMinHash")
        ]
    except ImportError:
        print("rensa not installed (pip install rensa): skipped")

    baseline = None
    print("timings: best of repeats, CPU seconds of this process")
    print(f"{'method':45s} {'docs/s':>9s} {'shingles/s':>12s} {'MB/s':>7s} {'x baseline':>10s}")
    results = {}
    for name, fn, repeats in methods:
        seconds, sigs = best_time(fn, repeats, clock=time.process_time)  # the dev box is shared
        results[name] = sigs
        baseline = baseline or seconds
        print(f"{name:45s} {len(texts) / seconds:9.1f} {n_shingles / seconds:12.0f} {mb / seconds:7.2f} "
              f"{baseline / seconds:10.1f}")
    exact = all(np.array_equal(a, b) for a, b in
                zip(results["datasketch MinHash.update loop (baseline)"], results["ours MinHasher hash=sha1"]))
    print(f"ours hash=sha1 signatures identical to the baseline's: {exact}")
    check = jaccard_check(texts)
    print("estimated Jaccard on known pairs: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                                          for k, v in check.items()))
    return 0 if exact and check["max_diff_same_hash"] <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
