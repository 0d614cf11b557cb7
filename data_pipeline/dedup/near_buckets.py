"""Near-dedup step 2 of 4: LSH band buckets, one unit per (band, key partition).

A unit reads one band (`rows` consecutive signature values) of every document of every shard through memory maps,
keeps the documents whose band falls in its key partition, sorts the bands bytewise and writes, for each bucket
holding two or more documents, the edges (document, first document of the bucket). Documents sharing a bucket agree
on all `rows` values of that band: the LSH candidate rule of BigCode and datatrove. Memory per unit is about
~2 x (`rows` x 4 + 8) bytes per document of the corpus divided by `bucket_partitions`; units run on any machine.
With `verify_jaccard` the candidates are checked against the full signatures first (near_verify.py).
"""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from data_pipeline.dedup.near_config import NearDedupConfig
from data_pipeline.dedup.near_files import (
    BUCKETS_STEP,
    bucket_path,
    bucket_unit,
    global_index,
    meta_path,
    save_npy_atomic,
    signature_path,
)
from data_pipeline.dedup.near_verify import SignatureLookup, verified_edges
from data_pipeline.stage import StageContext, Step
from data_pipeline.stats import UnitStats

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
    sizes = np.bincount(bucket)
    shared = sizes[bucket] >= 2
    return doc_index[order][shared], bucket[shared]


def first_member_edges(members: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """BigCode's rule: every member of a bucket is linked to the bucket's first member."""
    if len(members) == 0:
        return np.empty((0, 2), np.int64)
    is_first = np.ones(len(members), dtype=bool)
    is_first[1:] = bucket[1:] != bucket[:-1]
    first = members[is_first][np.cumsum(is_first) - 1]
    return np.stack([members[~is_first], first[~is_first]], axis=1)


def load_band(ctx: StageContext, shard: int, band: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The band values and global indices of the shard's documents that have shingles."""
    shingles = pq.read_table(str(meta_path(ctx, shard)), columns=["shingles"]).column("shingles").to_numpy()
    sigs = np.load(signature_path(ctx, shard), mmap_mode="r")
    if len(sigs) != len(shingles):
        raise ValueError(f"{signature_path(ctx, shard)}: {len(sigs)} signatures for {len(shingles)} rows; "
                         "delete the near_dedup stage directory and rerun")
    keep = np.flatnonzero(shingles > 0)
    values = np.asarray(sigs[:, band * rows : (band + 1) * rows])[keep]
    return values, global_index(shard, keep)


def build_bucket_unit(ctx: StageContext, band: int, partition: int, cfg: NearDedupConfig) -> UnitStats:
    bands, rows = cfg.band_rows
    values_parts, index_parts = [], []
    for shard in range(len(ctx.input_shards)):
        values, index = load_band(ctx, shard, band, rows)
        if cfg.bucket_partitions > 1:
            mine = band_partition(values, cfg.bucket_partitions) == partition
            values, index = values[mine], index[mine]
        values_parts.append(values)
        index_parts.append(index)
    values = np.concatenate(values_parts) if values_parts else np.empty((0, rows), np.uint32)
    index = np.concatenate(index_parts) if index_parts else np.empty(0, np.int64)
    members, bucket = bucket_groups(values, index)
    stats = UnitStats()
    n_buckets = int(len(np.unique(bucket)))
    if cfg.verify_jaccard:
        edges, unchecked = verified_edges(members, bucket, SignatureLookup(ctx).estimate, cfg.threshold)
        stats.extra["candidates_unlinked"] = int(len(members) - n_buckets - len(edges))  # failed the estimate
        stats.extra["candidates_unchecked"] = unchecked
    else:
        edges = first_member_edges(members, bucket)
    save_npy_atomic(bucket_path(ctx, bucket_unit(band, partition)), edges)
    stats.extra.update(bucket_edges=int(len(edges)), duplicate_buckets=n_buckets)
    return stats


class BucketStep(Step):
    name = BUCKETS_STEP

    def units(self, ctx: StageContext) -> list[str]:
        cfg = NearDedupConfig.from_dict(ctx.cfg)
        bands, _ = cfg.band_rows
        return [bucket_unit(b, p) for b in range(bands) for p in range(cfg.bucket_partitions)]

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        band_part, part = unit[1:].split("-p")
        return build_bucket_unit(ctx, int(band_part), int(part), NearDedupConfig.from_dict(ctx.cfg))
