"""A small synthetic corpus with planted near-duplicates, written as several document shards."""
from __future__ import annotations

import random
from pathlib import Path

from data_pipeline.records import Document, write_documents

WORDS = [f"w{i}" for i in range(5000)]


def random_text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def mutate(text: str, rng: random.Random, n_changes: int) -> str:
    """Replace `n_changes` words with fresh ones: each change breaks at most 5 of the word 5-grams."""
    words = text.split(" ")
    for i in rng.sample(range(len(words)), n_changes):
        words[i] = f"fresh{rng.randrange(10**9)}"
    return " ".join(words)


def doc(doc_id: str, text: str) -> Document:
    return Document(id=doc_id, text=text, kind="code", lang="python", source="synthetic", path=f"src/{doc_id}.py")


def build_corpus(root: Path, seed: int = 0) -> tuple[list[Path], dict[str, str]]:
    """Four shards (the last empty); returns the shard paths and {dropped id: kept id} that near-dedup must produce.

    Clusters: a0 (shard 0) with a1 (shard 1, 2 words changed of 300) and a2 (shard 2, exact copy);
    b0 with b1 inside shard 1; c0 (shard 2) and c1 (shard 0): the kept one is the earlier in input order (c1).
    Plus unrelated documents, a 40%-overlap pair that must survive, and documents too short to have shingles
    (two identical ones, which must both survive: they are never clustered).
    """
    rng = random.Random(seed)
    a, b, c = (random_text(rng, 300) for _ in range(3))
    half = random_text(rng, 300)
    half_words = half.split(" ")
    overlap = " ".join(half_words[:120] + random_text(rng, 180).split(" "))
    shards = [
        [doc("a0", a), doc("u00", random_text(rng, 200)), doc("c1", mutate(c, rng, 1)), doc("short0", "x = 1"),
         doc("half0", half)],
        [doc("u10", random_text(rng, 250)), doc("a1", mutate(a, rng, 2)), doc("b0", b), doc("b1", mutate(b, rng, 3)),
         doc("empty", "")],
        [doc("a2", a), doc("c0", c), doc("short1", "x = 1"), doc("half1", overlap), doc("u20", random_text(rng, 80))],
        [],  # an empty shard (a filter upstream dropped everything) is a valid input
    ]
    paths = []
    for i, docs in enumerate(shards):
        path = root / f"part-{i:05d}.parquet"
        write_documents(path, docs)
        paths.append(path)
    expected = {"a1": "a0", "a2": "a0", "b1": "b0", "c0": "c1"}
    return paths, expected
