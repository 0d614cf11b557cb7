"""Near-dedup step 2 of 4: LSH band buckets, one unit per (band, key partition).

A unit reads one band (`rows` consecutive signature values) of every document of every shard through memory maps,
keeps the documents whose band falls in its key partition, sorts the bands bytewise and writes, for each bucket
holding two or more documents, the edges (document, first document of the bucket). Documents sharing a bucket agree
on all `rows` values of that band: the LSH candidate rule of BigCode and datatrove. Memory per unit is about
`rows * 4 + 16` bytes per document of the corpus divided by `bucket_partitions`; units run on any machine.
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


def bucket_edges(band_values: np.ndarray, doc_index: np.ndarray) -> tuple[np.ndarray, int]:
    """Edges (document, first document of its bucket) for buckets of size >= 2, and the number of such buckets.

    `doc_index` must be increasing, so a stable sort puts each bucket's smallest document first."""
    if len(doc_index) < 2:
        return np.empty((0, 2), np.int64), 0
    rows = np.ascontiguousarray(band_values)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts_new = np.ones(len(order), dtype=bool)
    starts_new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    bucket_id = np.cumsum(starts_new) - 1
    first_member = doc_index[order][starts_new][bucket_id]
    members = doc_index[order]
    dup = ~starts_new
    edges = np.stack([members[dup], first_member[dup]], axis=1)
    n_buckets = int(np.unique(bucket_id[dup]).size) if dup.any() else 0
    return edges, n_buckets


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
    edges, n_buckets = bucket_edges(values, index)
    save_npy_atomic(bucket_path(ctx, bucket_unit(band, partition)), edges)
    stats = UnitStats()
    stats.extra = {"bucket_edges": int(len(edges)), "duplicate_buckets": n_buckets}
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
