"""Near-dedup step 3 of 4: clusters from the bucket files (one unit), and which rows each shard must drop.

All bucket edges go through one union-find (`union_find.components`) whose root is the smallest global index, so
each cluster keeps the document that comes first in input order. Only clustered documents are held in memory
(edges plus their indices), never the corpus. The step writes one removal list per input shard (row, kept id,
kept path) and a report: cluster count, size histogram and the largest clusters with example ids and paths.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_pipeline.dedup.near_buckets import BucketStep
from data_pipeline.dedup.near_config import NearDedupConfig
from data_pipeline.dedup.near_files import (
    CLUSTERS_STEP,
    REMOVAL_SCHEMA,
    bucket_path,
    meta_path,
    removal_path,
    report_path,
    split_index,
)
from data_pipeline.dedup.union_find import components
from data_pipeline.stage import StageContext, Step, temp_path
from data_pipeline.stats import UnitStats, write_json_atomic

CLUSTERS_UNIT = "all"


def load_edges(ctx: StageContext) -> np.ndarray:
    parts = []
    for unit in BucketStep().units(ctx):
        path = bucket_path(ctx, unit)
        if not path.exists():
            raise FileNotFoundError(f"{path}: bucket file missing; run the near_dedup '{BucketStep.name}' step first")
        parts.append(np.load(path))
    return np.concatenate(parts) if parts else np.empty((0, 2), np.int64)


def lookup_meta(ctx: StageContext, index: np.ndarray) -> dict[int, tuple[str, str | None]]:
    """(id, path) of the documents with the given global indices, reading one shard's metadata at a time."""
    found: dict[int, tuple[str, str | None]] = {}
    shards, rows = split_index(np.unique(index))
    for shard in np.unique(shards):
        table = pq.read_table(str(meta_path(ctx, int(shard))), columns=["id", "path"])
        wanted = rows[shards == shard]
        ids = table.column("id").take(pa.array(wanted)).to_pylist()
        paths = table.column("path").take(pa.array(wanted)).to_pylist()
        base = int(shard) << 32
        for row, doc_id, path in zip(wanted.tolist(), ids, paths):
            found[base | row] = (doc_id, path)
    return found


def cluster_sizes(roots: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cluster roots, their sizes, positions of the `top` largest clusters, largest first)."""
    cluster_roots, sizes = np.unique(roots, return_counts=True)
    return cluster_roots, sizes, np.argsort(-sizes, kind="stable")[:top]


def cluster_report(nodes: np.ndarray, roots: np.ndarray, cfg: NearDedupConfig, meta: dict) -> dict[str, Any]:
    cluster_roots, sizes, largest = cluster_sizes(roots, cfg.report_clusters)
    histogram = Counter(sizes.tolist())
    examples = []
    for i in largest:
        root = int(cluster_roots[i])
        members = nodes[roots == root][: cfg.report_examples]
        examples.append(
            {
                "size": int(sizes[i]),
                "kept": {"id": meta[root][0], "path": meta[root][1]},
                "members": [{"id": meta[int(m)][0], "path": meta[int(m)][1]} for m in members],
            }
        )
    return {
        "clusters": int(len(cluster_roots)),
        "documents_in_clusters": int(len(nodes)),
        "duplicates_removed": int(len(nodes) - len(cluster_roots)),
        "size_histogram": {str(k): histogram[k] for k in sorted(histogram)},
        "largest": examples,
    }


def build_clusters(ctx: StageContext, cfg: NearDedupConfig) -> UnitStats:
    edges = load_edges(ctx)
    nodes, roots = components(edges[:, 0], edges[:, 1])
    removed = nodes != roots
    cluster_roots, _, largest = cluster_sizes(roots, cfg.report_clusters)
    largest_roots = cluster_roots[largest]
    examples = [nodes[roots == r][: cfg.report_examples] for r in largest_roots]
    shown = np.concatenate([*examples, roots[removed], np.empty(0, np.int64)])
    meta = lookup_meta(ctx, shown)
    report = cluster_report(nodes, roots, cfg, meta)

    shard_of, row_of = split_index(nodes[removed])  # nodes are sorted, so shards come in order, rows within them
    kept_roots = roots[removed]
    bounds = np.searchsorted(shard_of, np.arange(len(ctx.input_shards) + 1))
    for shard in range(len(ctx.input_shards)):
        mine = slice(bounds[shard], bounds[shard + 1])
        kept = [meta[int(r)] for r in kept_roots[mine]]
        table = pa.table(
            {
                "row": pa.array(row_of[mine], pa.int64()),
                "kept_id": pa.array([k[0] for k in kept], pa.string()),
                "kept_path": pa.array([k[1] for k in kept], pa.string()),
            },
            schema=REMOVAL_SCHEMA,
        )
        path = removal_path(ctx, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(path)
        pq.write_table(table, str(tmp))
        tmp.replace(path)
    write_json_atomic(report_path(ctx), report)
    stats = UnitStats()
    stats.extra = {k: report[k] for k in ("clusters", "documents_in_clusters", "duplicates_removed")}
    return stats


def read_report(ctx: StageContext) -> dict[str, Any]:
    path = report_path(ctx)
    return json.loads(path.read_text()) if path.exists() else {}


class ClusterStep(Step):
    name = CLUSTERS_STEP

    def units(self, ctx: StageContext) -> list[str]:
        return [CLUSTERS_UNIT]

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        return build_clusters(ctx, NearDedupConfig.from_dict(ctx.cfg))
