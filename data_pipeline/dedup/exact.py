"""Exact deduplication: documents whose normalised content hashes equal; the smallest id of each group is kept.

Three steps, so that no step holds more than one hash bucket in memory however large the corpus:
1. `hash` (per input shard): xxh128 of the normalised text -> (bucket, hash, id, shard, row) rows, one file per
   bucket.
2. `resolve` (per bucket): group equal hashes over all shards; every document but the one with the smallest id
   (then shard, row) is a duplicate.
3. `filter` (per input shard): drop the rows found duplicate in this shard, keep the rest.
Documents are named by (shard, row), never by id alone: records of a JSONL or Parquet input may repeat an id.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from data_pipeline.atomic import atomic_path
from data_pipeline.config import config_from_dict
from data_pipeline.stage import Stage, StageContext, Step, filter_rows, shard_units
from data_pipeline.stats import UnitStats

HASH_SCHEMA = pa.schema([("hash", pa.binary(16)), ("id", pa.string()), ("shard", pa.int32()), ("row", pa.int64())])
MAX_BUCKETS = 4096  # 2000 buckets: 3.6 s and 10,000 files for a 2-document shard; 10**6 would take ~30 min
DUPLICATE_SCHEMA = pa.schema([("id", pa.string()), ("shard", pa.int32()), ("row", pa.int64()),
                              ("kept_id", pa.string())])


def normalise(text: str, mode: str) -> str:
    """`none`: as is; `lines` (default): line endings unified, trailing spaces and surrounding blank lines removed;
    `whitespace`: every run of whitespace collapsed to one space."""
    if mode == "none":
        return text
    if mode == "whitespace":
        return " ".join(text.split())
    if mode == "lines":
        return "\n".join(map(str.rstrip, text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))).strip()
    raise ValueError(f"exact_dedup.normalize={mode!r}: use none, lines or whitespace")


def content_hash(text: str, mode: str) -> bytes:
    return xxhash.xxh128_digest(normalise(text, mode).encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class ExactDedupConfig:
    """`exact_dedup.*` (configs/pipeline/exact_dedup/default.yaml)."""

    enabled: bool = True
    normalize: str = "lines"  # none | lines | whitespace (see `normalise`)
    buckets: int = 16  # hash buckets resolved independently: memory per resolve unit ~ corpus / buckets

    def __post_init__(self) -> None:
        normalise("", self.normalize)  # a bad mode fails before any work
        if not 1 <= self.buckets <= MAX_BUCKETS:  # every input shard writes one file per bucket
            raise ValueError(f"exact_dedup.buckets must be in [1, {MAX_BUCKETS}], got {self.buckets}")

    @classmethod
    def from_dict(cls, section: dict[str, Any] | None) -> "ExactDedupConfig":
        return config_from_dict(cls, section, "exact_dedup")


def _write_parquet(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp))


class HashStep(Step):
    name = "hash"

    def units(self, ctx: StageContext) -> list[str]:
        return shard_units(ctx)

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        cfg = ExactDedupConfig.from_dict(ctx.cfg)
        mode, n_buckets = cfg.normalize, cfg.buckets
        rows: list[list[tuple[bytes, str, int]]] = [[] for _ in range(n_buckets)]
        row = 0
        # only the two columns it needs, as Python strings: no Document, no `meta` parsed
        for batch in pq.ParquetFile(str(ctx.input_shards[int(unit)])).iter_batches(columns=["id", "text"]):
            ids, texts = batch.column("id").to_pylist(), batch.column("text").to_pylist()
            if batch.column("text").null_count:
                raise ValueError(f"{ctx.input_shards[int(unit)]}: document {ids[texts.index(None)]!r} has a null "
                                 "text; the previous stage must drop it")
            for doc_id, text in zip(ids, texts):
                digest = content_hash(text, mode)
                rows[int.from_bytes(digest[:4], "little") % n_buckets].append((digest, doc_id, row))
                row += 1
        shard = int(unit)
        for bucket, items in enumerate(rows):
            table = pa.table({"hash": [h for h, _, _ in items], "id": [i for _, i, _ in items],
                              "shard": [shard] * len(items), "row": [r for _, _, r in items]}, schema=HASH_SCHEMA)
            _write_parquet(table, ctx.scratch_dir(self.name) / f"{bucket:04d}" / f"{unit}.parquet")
        return UnitStats()


class ResolveStep(Step):
    name = "resolve"

    def units(self, ctx: StageContext) -> list[str]:
        return [f"{b:04d}" for b in range(ExactDedupConfig.from_dict(ctx.cfg).buckets)]

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        files = [ctx.scratch_dir("hash") / unit / f"{s}.parquet" for s in shard_units(ctx)]
        tables = [pq.read_table(str(f)) for f in files]
        table = pa.concat_tables(tables) if tables else HASH_SCHEMA.empty_table()
        table = table.sort_by([(c, "ascending") for c in ("hash", "id", "shard", "row")])
        hashes, ids, shards, rows = (table[c].to_pylist() for c in ("hash", "id", "shard", "row"))
        dup_ids, dup_shards, dup_rows, kept_ids = [], [], [], []
        groups, kept = 0, ""  # kept: the first (smallest) id of the current run of equal hashes
        for i in range(len(hashes)):
            if i and hashes[i] == hashes[i - 1]:
                dup_ids.append(ids[i])
                dup_shards.append(shards[i])
                dup_rows.append(rows[i])
                kept_ids.append(kept)
                if i < 2 or hashes[i - 2] != hashes[i]:  # second member: a new group
                    groups += 1
            else:
                kept = ids[i]
        out = pa.table({"id": dup_ids, "shard": dup_shards, "row": dup_rows, "kept_id": kept_ids},
                       schema=DUPLICATE_SCHEMA)
        _write_parquet(out, ctx.scratch_dir(self.name) / f"{unit}.parquet")
        return UnitStats(extra={"duplicate_groups": groups, "duplicates": len(dup_ids)})


@lru_cache(maxsize=4096)
def _duplicates_by_shard(path: str, mtime_ns: int) -> dict[int, list[int]]:
    """One bucket's duplicate rows by shard, read once per process (a worker filters many shards); mtime: a rerun
    may rewrite the file."""
    table = pq.read_table(path, columns=["shard", "row"])
    out: dict[int, list[int]] = {}
    for shard, row in zip(table["shard"].to_pylist(), table["row"].to_pylist()):
        out.setdefault(shard, []).append(row)
    return out


class ExactFilterStep(Step):
    name = "filter"

    def units(self, ctx: StageContext) -> list[str]:
        return shard_units(ctx)

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        shard = int(unit)
        duplicates: set[int] = set()
        for path in sorted(ctx.scratch_dir("resolve").glob("*.parquet")):
            duplicates.update(_duplicates_by_shard(str(path), path.stat().st_mtime_ns).get(shard, ()))
        return filter_rows(ctx, unit, ctx.input_shards[shard], lambda batch, first: [
            "duplicate" if row in duplicates else None for row in range(first, first + batch.num_rows)])


def build_stage(section: dict[str, Any]) -> Stage:
    ExactDedupConfig.from_dict(section)  # unknown keys and a bad mode stop the run before any work
    return Stage("exact_dedup", [HashStep(), ResolveStep(), ExactFilterStep()])

