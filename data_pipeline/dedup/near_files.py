"""File layout shared by the four near-dedup steps, and the global document index they exchange.

A document is named by its global index `shard << 32 | row` (shard = position of its input shard in the sorted
input list, row = position inside that shard), so "smallest index" is "first in input order", BigCode's
smallest `__id__`, and no step needs the documents' string ids until the very end.

```
scratch/signatures/<shard>.sig.npy        uint32 [rows, num_perm], every row of the shard (no shingles: all 0xFFFFFFFF)
scratch/signatures/<shard>.meta.parquet   id, path, source, shingles (int32; 0 = no shingles, not clustered)
scratch/buckets/<unit>.npy                int64 [edges, 2]: (document, first document of its bucket) for one band
scratch/clusters/<shard>.parquet          row, kept_id, kept_path: rows of the shard that duplicate an earlier document
scratch/clusters/report.json              cluster sizes and examples
```
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from data_pipeline.stage import StageContext, temp_path

SIGNATURES_STEP = "signatures"
BUCKETS_STEP = "buckets"
CLUSTERS_STEP = "clusters"
FILTER_STEP = "filter"

META_SCHEMA = pa.schema(
    [("id", pa.string()), ("path", pa.string()), ("source", pa.string()), ("shingles", pa.int32())]
)
REMOVAL_SCHEMA = pa.schema([("row", pa.int64()), ("kept_id", pa.string()), ("kept_path", pa.string())])

ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1


def global_index(shard: int, rows: np.ndarray) -> np.ndarray:
    return (np.int64(shard) << np.int64(ROW_BITS)) | rows.astype(np.int64)


def split_index(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shard, row) arrays of global indices."""
    index = np.asarray(index, dtype=np.int64)
    return index >> np.int64(ROW_BITS), index & np.int64(ROW_MASK)


def shard_unit(shard: int) -> str:
    return f"{shard:05d}"


def signature_path(ctx: StageContext, shard: int) -> Path:
    return ctx.scratch_dir(SIGNATURES_STEP) / f"{shard_unit(shard)}.sig.npy"


def meta_path(ctx: StageContext, shard: int) -> Path:
    return ctx.scratch_dir(SIGNATURES_STEP) / f"{shard_unit(shard)}.meta.parquet"


def bucket_unit(band: int, partition: int) -> str:
    return f"b{band:03d}-p{partition:03d}"


def bucket_path(ctx: StageContext, unit: str) -> Path:
    return ctx.scratch_dir(BUCKETS_STEP) / f"{unit}.npy"


def removal_path(ctx: StageContext, shard: int) -> Path:
    return ctx.scratch_dir(CLUSTERS_STEP) / f"{shard_unit(shard)}.parquet"


def report_path(ctx: StageContext) -> Path:
    return ctx.scratch_dir(CLUSTERS_STEP) / "report.json"


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a bare temporary name
        np.save(f, array)
    os.replace(tmp, path)
