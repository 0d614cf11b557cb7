"""Band buckets: grouping by equal band values, BigCode's first-member edges, and signature verification rounds."""
import numpy as np

from data_pipeline.dedup.minhash import MinHasher, band_partition, bucket_groups, first_member_edges, verified_edges
from data_pipeline.dedup.near_dedup import NearDedupConfig


def test_bucket_groups_and_first_member_edges():
    band = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4], [1, 2]], dtype=np.uint32)
    index = np.array([10, 11, 12, 13, 14, 15], dtype=np.int64)
    members, bucket = bucket_groups(band, index)
    groups = {}
    for m, b in zip(members.tolist(), bucket.tolist()):
        groups.setdefault(b, []).append(m)
    assert sorted(groups.values()) == [[10, 12, 15], [11, 14]]  # the singleton [5, 6] is not a bucket
    edges = first_member_edges(members, bucket)
    assert sorted(map(tuple, edges.tolist())) == [(12, 10), (14, 11), (15, 10)]


def test_verified_edges_rounds():
    """A member failing against the representative is checked against the next one, in later rounds."""
    similar = {frozenset(p) for p in [(1, 2), (3, 4), (3, 5)]}

    def estimate(a, b):
        return np.array([0.9 if frozenset((x, y)) in similar else 0.4 for x, y in zip(a.tolist(), b.tolist())])

    members = np.array([1, 2, 3, 4, 5, 7, 8], dtype=np.int64)
    bucket = np.array([0, 0, 0, 0, 0, 1, 1], dtype=np.int64)
    edges, unchecked = verified_edges(members, bucket, estimate, threshold=0.7)
    assert sorted(map(tuple, edges.tolist())) == [(2, 1), (4, 3), (5, 3)]  # 7 and 8 are not similar
    assert unchecked == 0
    edges, unchecked = verified_edges(members, bucket, estimate, threshold=0.7, max_rounds=1)
    assert sorted(map(tuple, edges.tolist())) == [(2, 1)]
    assert unchecked == 2  # 4 and 5 were still waiting for the representative 3


def test_band_partition_is_deterministic_and_covers_all():
    band = np.random.default_rng(0).integers(0, 2**32, size=(1000, 10)).astype(np.uint32)
    parts = band_partition(band, 4)
    assert set(parts.tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(parts, band_partition(band.copy(), 4))
    same = band_partition(np.vstack([band[:1], band[:1]]), 4)
    assert same[0] == same[1]  # equal bands always land in the same partition


def test_candidates_equal_datasketch_minhash_lsh():
    """Our band buckets find exactly the candidate pairs of datasketch's MinHashLSH fed with our signatures."""
    import random

    from datasketch import MinHash, MinHashLSH

    from .corpus import mutate, random_text

    rng = random.Random(3)
    bases = [random_text(rng, 200) for _ in range(6)]
    texts = bases + [mutate(b, rng, k) for b in bases for k in (2, 5, 8, 25)]  # J ~ 0.9, 0.78, 0.67, 0.3
    cfg = NearDedupConfig()
    sigs = MinHasher(cfg).signatures(texts).signatures
    bands, rows = cfg.band_rows
    ours = set()
    for band in range(bands):
        members, bucket = bucket_groups(sigs[:, band * rows : (band + 1) * rows], np.arange(len(texts)))
        for b in np.unique(bucket):
            group = members[bucket == b].tolist()
            ours |= {(x, y) for x in group for y in group if x < y}
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    assert (lsh.b, lsh.r) == (bands, rows)
    minhashes = [MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashvalues=s, scheme="affine32") for s in sigs]
    for i, m in enumerate(minhashes):
        lsh.insert(i, m)
    theirs = {(min(i, j), max(i, j)) for i, m in enumerate(minhashes) for j in lsh.query(m) if i != j}
    assert ours == theirs
    assert len(ours) > len(bases)  # the check is not vacuous: mutated copies do collide
