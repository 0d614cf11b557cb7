"""The `near_dedup` stage: MinHash LSH near-deduplication in four steps, as BigCode and datatrove scale it.

1. `signatures` (one unit per input shard): MinHash signatures, streamed, written as memory-mappable matrices.
2. `buckets` (one unit per LSH band, optionally split by key): documents sharing a band's values -> bucket edges.
3. `clusters` (one unit): connected components of all edges; the first document of each in input order is kept.
4. `filter` (one unit per input shard): writes the kept documents and records the dropped ones.

Defaults follow BigCode's recipe (configs/pipeline/near_dedup/default.yaml): word 5-grams split on `[^A-Za-z_0-9]`,
256 permutations, Jaccard threshold 0.7, hence 25 bands x 10 rows. A document is named by its global index
`shard << 32 | row` (position of its input shard, row inside it), so "smallest index" is "first in input order",
BigCode's smallest `__id__`, and no step needs the string ids until the end. Files, under the stage's scratch dir:
```
signatures/<shard>.sig.npy       uint32 [rows, num_perm], every row of the shard (no shingles: all 0xFFFFFFFF)
signatures/<shard>.meta.parquet  id, path, source, shingles (int32; 0 = no shingles, never clustered)
buckets/<unit>.npy               int64 [edges, 2]: (document, representative of its bucket) for one band
clusters/<shard>.parquet         row, kept_id, kept_path: rows of the shard that duplicate an earlier document
clusters/report.json             cluster count, size histogram, the largest clusters with example ids and paths
```
Every file is written atomically and the executor marks each unit done, so reruns skip finished work.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from data_pipeline.atomic import DamagedFile, atomic_path, read_json, write_json_atomic
from data_pipeline.config import config_from_dict
from data_pipeline.dedup.minhash import (MinHashConfig, MinHasher, band_partition, bucket_groups, first_member_edges,
                                         optimal_bands_rows, verified_edges)
from data_pipeline.stage import Stage, StageContext, Step, filter_rows, shard_units
from data_pipeline.stats import RedoUnits, UnitStats

STAGE_NAME = "near_dedup"
SIGNATURES, BUCKETS, CLUSTERS, FILTER = "signatures", "buckets", "clusters", "filter"
META_SCHEMA = pa.schema([("id", pa.string()), ("path", pa.string()), ("source", pa.string()),
                         ("shingles", pa.int32())])
REMOVAL_SCHEMA = pa.schema([("row", pa.int64()), ("kept_id", pa.string()), ("kept_path", pa.string())])
EMPTY_SIGNATURE = np.iinfo(np.uint32).max
ROW_BITS = 32
DROP_REASON_PREFIX = "near_duplicate_of:"  # dropped records name the kept document; stats count one reason
STATS_REASON = "near_duplicate"
GATHER_CHUNK = 65536  # verified edges compared at once: 2 x 65536 x 1 KiB of signatures


@dataclass(frozen=True)
class NearDedupConfig(MinHashConfig):
    """`near_dedup.*`: the MinHash fields of MinHashConfig plus LSH, verification, partitioning and reporting."""

    enabled: bool = True
    threshold: float = 0.7
    bands: int | None = None  # None: chosen from threshold and num_perm (with rows)
    rows: int | None = None
    false_positive_weight: float = 0.5
    false_negative_weight: float = 0.5
    verify_jaccard: bool = True  # link bucket members only when their signature estimate >= threshold
    bucket_partitions: int = 1  # split each band's buckets by key: memory of one bucket unit / partitions
    batch_size: int = 256  # documents hashed together
    report_clusters: int = 10  # largest clusters listed in stats, with example ids and paths
    report_examples: int = 5  # members shown per listed cluster

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"near_dedup.threshold must be in (0, 1), got {self.threshold}")
        if (self.bands is None) != (self.rows is None):
            raise ValueError("near_dedup.bands and near_dedup.rows must be set together (or both left null)")
        if self.bands is not None and (min(self.bands, self.rows) < 1 or self.bands * self.rows > self.num_perm):
            raise ValueError(f"near_dedup.bands x rows = {self.bands} x {self.rows}: both must be >= 1 and their "
                             f"product <= num_perm={self.num_perm}")
        for key, low in (("bucket_partitions", 1), ("batch_size", 1), ("report_clusters", 0), ("report_examples", 0)):
            if getattr(self, key) < low:
                raise ValueError(f"near_dedup.{key} must be >= {low}, got {getattr(self, key)}")
        weights = (self.false_positive_weight, self.false_negative_weight)
        if not all(0 <= w < float("inf") for w in weights) or sum(weights) == 0:
            raise ValueError(f"near_dedup.false_positive_weight, false_negative_weight = {weights}: use finite "
                             "values >= 0, not both 0")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "NearDedupConfig":
        return config_from_dict(cls, data, STAGE_NAME)

    @property
    def band_rows(self) -> tuple[int, int]:
        """(bands, rows) used for LSH: explicit, or optimal for threshold/num_perm."""
        if self.bands is not None:
            return self.bands, self.rows
        return optimal_bands_rows(self.threshold, self.num_perm, self.false_positive_weight,
                                  self.false_negative_weight)


def global_index(shard: int, rows: np.ndarray) -> np.ndarray:
    return (np.int64(shard) << np.int64(ROW_BITS)) | rows.astype(np.int64)


def split_index(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shard, row) arrays of global indices."""
    index = np.asarray(index, dtype=np.int64)
    return index >> np.int64(ROW_BITS), index & np.int64((1 << ROW_BITS) - 1)


def signature_path(ctx: StageContext, shard: int) -> Path:
    return ctx.scratch_dir(SIGNATURES) / f"{shard:05d}.sig.npy"


def meta_path(ctx: StageContext, shard: int) -> Path:
    return ctx.scratch_dir(SIGNATURES) / f"{shard:05d}.meta.parquet"


def removal_path(ctx: StageContext, shard: int) -> Path:
    return ctx.scratch_dir(CLUSTERS) / f"{shard:05d}.parquet"


def written(ctx: StageContext, path: Path, step: str, unit: str) -> str:
    """`path`, which unit `unit` of `step` wrote, to read; missing (removed by hand, or by keep_intermediate=false
    after an older run that recorded no files in its markers), RedoUnits: the executor does that unit again."""
    if not path.is_file():
        raise RedoUnits(f"{path} is missing", [ctx.unit_stats_path(step, unit)])
    return str(path)


# Step 1: signatures. Documents with fewer words than the n-gram size have no shingles: they are counted
# (`no_shingles`) and kept without being clustered, because their empty sets would otherwise all collide.
class SignatureStep(Step):
    name = SIGNATURES

    def units(self, ctx: StageContext) -> list[str]:
        return shard_units(ctx)

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        cfg, shard = NearDedupConfig.from_dict(ctx.cfg), int(unit)
        source, hasher = ctx.input_shards[shard], MinHasher(cfg)
        pf = pq.ParquetFile(str(source))
        n_rows = pf.metadata.num_rows
        no_shingles = shingles_total = row = 0
        # The matrix goes through a memory map and the text is streamed in batches: never a whole shard in memory.
        with atomic_path(signature_path(ctx, shard)) as sig_tmp, atomic_path(meta_path(ctx, shard)) as meta_tmp, \
                pq.ParquetWriter(str(meta_tmp), META_SCHEMA) as meta_writer, \
                tqdm(total=n_rows, desc=f"near_dedup signatures {unit}", unit="doc", leave=False, disable=None) as bar:
            sigs = np.lib.format.open_memmap(sig_tmp, mode="w+", dtype=np.uint32, shape=(n_rows, cfg.num_perm))
            for batch in pf.iter_batches(batch_size=cfg.batch_size, columns=["id", "text", "path", "source"]):
                texts = batch.column("text").to_pylist()
                if None in texts:
                    bad = batch.column("id")[texts.index(None)].as_py()
                    raise ValueError(f"{source}: document {bad!r} has a null text; the previous stage must drop it")
                result, n = hasher.signatures(texts), len(texts)
                block = sigs[row : row + n]
                block[:] = EMPTY_SIGNATURE
                block[result.has_shingles] = result.signatures
                counts = result.shingle_counts
                shingles = pa.array(np.minimum(counts, np.iinfo(np.int32).max).astype(np.int32))
                meta_writer.write_table(pa.table([batch.column("id"), batch.column("path"), batch.column("source"),
                                                  shingles], schema=META_SCHEMA))
                no_shingles += int(n - result.has_shingles.sum())
                shingles_total += int(counts.sum())
                row += n
                bar.update(n)
            if row != n_rows:
                raise ValueError(f"{source}: Parquet metadata says {n_rows} rows but {row} were read; rewrite it")
            sigs.flush()
            del sigs
        return UnitStats(extra={"signed": n_rows - no_shingles, "no_shingles": no_shingles,
                                "shingles": shingles_total})


# Step 2: LSH band buckets. A unit reads one band (`rows` consecutive signature values) of every document through
# memory maps, keeps the documents whose band falls in its key partition, sorts the bands bytewise and links the
# members of each bucket of two or more. Memory per unit: ~2 x (rows x 4 + 8) bytes per document / partitions.
# The bucketing itself is data_pipeline/dedup/minhash.py's (`bucket_groups`, `verified_edges`).
class SignatureLookup:
    """Signatures of documents by global index, read through memory maps of the signature files."""

    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self._maps: dict[int, np.ndarray] = {}

    def gather(self, index: np.ndarray) -> np.ndarray:
        shards, rows = split_index(index)
        out = None
        for shard in np.unique(shards).tolist():
            if shard not in self._maps:
                path = written(self.ctx, signature_path(self.ctx, shard), SIGNATURES, f"{shard:05d}")
                self._maps[shard] = np.load(path, mmap_mode="r")
            sigs = self._maps[shard]
            if out is None:
                out = np.empty((len(index), sigs.shape[1]), np.uint32)
            mine = np.flatnonzero(shards == shard)
            order = np.argsort(rows[mine], kind="stable")  # read the memory map in row order
            out[mine[order]] = sigs[rows[mine][order]]
        return out if out is not None else np.empty((0, 0), np.uint32)

    def estimate(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Estimated Jaccard of documents a[i] and b[i]: the share of equal signature values."""
        out = np.empty(len(a), np.float64)
        for lo in range(0, len(a), GATHER_CHUNK):
            out[lo : lo + GATHER_CHUNK] = (self.gather(a[lo : lo + GATHER_CHUNK])
                                           == self.gather(b[lo : lo + GATHER_CHUNK])).mean(axis=1)
        return out


@lru_cache(maxsize=4096)
def _shingle_counts(path: str, mtime_ns: int) -> np.ndarray:
    """A shard's shingle counts, read once per process (a worker does many bands); mtime: a rerun may rewrite it."""
    return pq.read_table(path, columns=["shingles"]).column("shingles").to_numpy()


def load_band(ctx: StageContext, shard: int, band: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The band values and global indices of the shard's documents that have shingles."""
    meta = written(ctx, meta_path(ctx, shard), SIGNATURES, f"{shard:05d}")
    shingles = _shingle_counts(meta, Path(meta).stat().st_mtime_ns)
    sigs = np.load(written(ctx, signature_path(ctx, shard), SIGNATURES, f"{shard:05d}"), mmap_mode="r")
    if len(sigs) != len(shingles):
        raise RedoUnits(f"{signature_path(ctx, shard)}: {len(sigs)} signatures for {len(shingles)} rows",
                        [ctx.unit_stats_path(SIGNATURES, f"{shard:05d}")])
    keep = np.flatnonzero(shingles > 0)
    return np.asarray(sigs[:, band * rows : (band + 1) * rows])[keep], global_index(shard, keep)


class BucketStep(Step):
    name = BUCKETS

    def units(self, ctx: StageContext) -> list[str]:
        cfg = NearDedupConfig.from_dict(ctx.cfg)
        return [f"b{b:03d}-p{p:03d}" for b in range(cfg.band_rows[0]) for p in range(cfg.bucket_partitions)]

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        cfg = NearDedupConfig.from_dict(ctx.cfg)
        band, partition = (int(x) for x in unit[1:].split("-p"))
        rows = cfg.band_rows[1]
        values_parts, index_parts = [np.empty((0, rows), np.uint32)], [np.empty(0, np.int64)]
        for shard in range(len(ctx.input_shards)):
            values, index = load_band(ctx, shard, band, rows)
            if cfg.bucket_partitions > 1:
                mine = band_partition(values, cfg.bucket_partitions) == partition
                values, index = values[mine], index[mine]
            values_parts.append(values)
            index_parts.append(index)
        members, bucket = bucket_groups(np.concatenate(values_parts), np.concatenate(index_parts))
        stats = UnitStats()
        n_buckets = int(len(np.unique(bucket)))
        if cfg.verify_jaccard:
            edges, unchecked = verified_edges(members, bucket, SignatureLookup(ctx).estimate, cfg.threshold)
            stats.extra["candidates_unlinked"] = int(len(members) - n_buckets - len(edges))  # failed the estimate
            stats.extra["candidates_unchecked"] = unchecked
        else:
            edges = first_member_edges(members, bucket)
        # np.save to an open file: given a bare temporary name it would append ".npy".
        with atomic_path(ctx.scratch_dir(BUCKETS) / f"{unit}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, edges)
        stats.extra.update(bucket_edges=int(len(edges)), duplicate_buckets=n_buckets)
        return stats


# Step 3: clusters. Only clustered documents are held in memory (the edges and their indices), never the corpus.
def components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the graph with edges (u[i], v[i]) over int64 node ids.

    Returns (nodes, roots): the sorted distinct nodes that appear in an edge, and for each the smallest node of its
    component (BigCode's rule: the smallest index, the first document in input order, survives)."""
    # Imported here: 0.2 s of CPU that only this step needs (Slurm tasks of other steps do not pay it).
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    u, v = np.asarray(u, dtype=np.int64), np.asarray(v, dtype=np.int64)
    if u.shape != v.shape:
        raise ValueError(f"edge arrays differ in length: {u.shape} vs {v.shape}")
    nodes, labels = np.unique(np.concatenate([u, v]), return_inverse=True)
    graph = coo_array((np.ones(len(u), bool), (labels[: len(u)], labels[len(u) :])), shape=(len(nodes),) * 2)
    _, component = connected_components(graph, directed=False)
    # Nodes are sorted, so the first position of each component label is its smallest node.
    _, first = np.unique(component, return_index=True)
    return nodes, nodes[first[component]]


def lookup_meta(ctx: StageContext, index: np.ndarray) -> dict[int, tuple[str, str | None]]:
    """(id, path) of the documents with the given global indices, reading one shard's metadata at a time."""
    found: dict[int, tuple[str, str | None]] = {}
    shards, rows = split_index(np.unique(index))
    for shard in np.unique(shards).tolist():
        table = pq.read_table(written(ctx, meta_path(ctx, shard), SIGNATURES, f"{shard:05d}"), columns=["id", "path"])
        wanted = rows[shards == shard]
        ids = table.column("id").take(pa.array(wanted)).to_pylist()
        paths = table.column("path").take(pa.array(wanted)).to_pylist()
        found.update(zip(global_index(shard, wanted).tolist(), zip(ids, paths)))
    return found


def cluster_report(nodes: np.ndarray, roots: np.ndarray, ctx: StageContext,
                   cfg: NearDedupConfig) -> tuple[dict[str, Any], dict[int, tuple[str, str | None]]]:
    """The report (cluster count, size histogram, the largest clusters with example members) and the (id, path) of
    every document it shows or that is kept in place of a duplicate."""
    cluster_roots, sizes = np.unique(roots, return_counts=True)
    largest = np.argsort(-sizes, kind="stable")[: cfg.report_clusters]
    examples = [nodes[roots == cluster_roots[i]][: cfg.report_examples] for i in largest]
    meta = lookup_meta(ctx, np.concatenate([*examples, roots[nodes != roots], np.empty(0, np.int64)]))
    histogram = Counter(sizes.tolist())

    def doc(i: int) -> dict[str, str | None]:
        return {"id": meta[int(i)][0], "path": meta[int(i)][1]}
    return {
        "clusters": int(len(cluster_roots)),
        "documents_in_clusters": int(len(nodes)),
        "duplicates_removed": int(len(nodes) - len(cluster_roots)),
        "size_histogram": {str(k): histogram[k] for k in sorted(histogram)},
        "largest": [{"size": int(sizes[i]), "kept": doc(cluster_roots[i]), "members": [doc(m) for m in members]}
                    for i, members in zip(largest, examples)],
    }, meta


class ClusterStep(Step):
    name = CLUSTERS

    def units(self, ctx: StageContext) -> list[str]:
        return ["all"]

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        cfg = NearDedupConfig.from_dict(ctx.cfg)
        parts = [np.empty((0, 2), np.int64)]
        for bucket_unit in BucketStep().units(ctx):
            parts.append(np.load(written(ctx, ctx.scratch_dir(BUCKETS) / f"{bucket_unit}.npy", BUCKETS, bucket_unit)))
        edges = np.concatenate(parts)
        nodes, roots = components(edges[:, 0], edges[:, 1])
        report, meta = cluster_report(nodes, roots, ctx, cfg)
        removed = nodes != roots
        shard_of, row_of = split_index(nodes[removed])  # nodes are sorted: shards in order, rows within them
        kept_roots = roots[removed]
        bounds = np.searchsorted(shard_of, np.arange(len(ctx.input_shards) + 1))
        for shard in range(len(ctx.input_shards)):
            mine = slice(bounds[shard], bounds[shard + 1])
            kept = [meta[r] for r in kept_roots[mine].tolist()]
            table = pa.table([pa.array(row_of[mine], pa.int64()), pa.array([k[0] for k in kept], pa.string()),
                              pa.array([k[1] for k in kept], pa.string())], schema=REMOVAL_SCHEMA)
            with atomic_path(removal_path(ctx, shard)) as tmp:
                pq.write_table(table, str(tmp))
        write_json_atomic(ctx.scratch_dir(CLUSTERS) / "report.json", report)
        return UnitStats(extra={k: report[k] for k in ("clusters", "documents_in_clusters", "duplicates_removed")})


# Step 4: filter. Dropped documents are recorded with reason `near_duplicate_of:<kept id>`; the stage's stats
# count them under the single reason `near_duplicate` (one counter, not one per cluster), with example paths.
class NearFilterStep(Step):
    name = FILTER

    def units(self, ctx: StageContext) -> list[str]:
        return shard_units(ctx)

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        shard = int(unit)
        table = pq.read_table(written(ctx, removal_path(ctx, shard), CLUSTERS, "all"), columns=["row", "kept_id"])
        removals = dict(zip(table.column("row").to_pylist(), table.column("kept_id").to_pylist()))

        def reasons(batch: pa.RecordBatch, first_row: int) -> list[str | None]:
            kept_ids = (removals.get(row) for row in range(first_row, first_row + batch.num_rows))
            return [None if kept_id is None else DROP_REASON_PREFIX + kept_id for kept_id in kept_ids]

        stats = filter_rows(ctx, unit, ctx.input_shards[shard], reasons).collapse(DROP_REASON_PREFIX, STATS_REASON)
        stats.extra = {"near_duplicates": len(removals)}
        return stats


class NearDedupStage(Stage):
    def __init__(self, name: str = STAGE_NAME):
        super().__init__(name, [SignatureStep(), BucketStep(), ClusterStep(), NearFilterStep()])

    def extra_stats(self, ctx: StageContext) -> dict[str, Any]:
        cfg = NearDedupConfig.from_dict(ctx.cfg)
        bands, rows = cfg.band_rows
        report = ctx.scratch_dir(CLUSTERS) / "report.json"
        try:  # written by the clusters step before its marker: gone or damaged, that step is done again
            clusters = read_json(report)
        except (OSError, DamagedFile) as err:
            why = str(err) if isinstance(err, DamagedFile) else f"{report} is missing"
            raise RedoUnits(why, [ctx.unit_stats_path(CLUSTERS, "all")]) from None
        return {"lsh": {"bands": bands, "rows": rows, "num_perm": cfg.num_perm, "threshold": cfg.threshold},
                "duplicate_clusters": clusters}


def build_stage(section: dict[str, Any] | None = None) -> Stage:
    """Registry entry point: validates the `near_dedup` section now, so a wrong key stops the run before any work."""
    NearDedupConfig.from_dict(section)
    return NearDedupStage()
