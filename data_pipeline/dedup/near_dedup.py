"""The `near_dedup` stage: MinHash LSH near-deduplication in four steps, as BigCode and datatrove scale it.

1. `signatures` (one unit per input shard): MinHash signatures, streamed, written as memory-mappable matrices.
2. `buckets` (one unit per LSH band, optionally split by key): documents sharing a band's values -> bucket edges.
3. `clusters` (one unit): union-find over all edges; the first document of each cluster in input order is kept.
4. `filter` (one unit per input shard): writes the kept documents and records the dropped ones.

The runner (`data_pipeline.runner`) runs each step's units in local worker processes or as SLURM array tasks;
every unit writes its files atomically and the runner marks it done, so reruns skip finished work.
Configuration: `near_dedup.*` (`configs/pipeline/near_dedup/default.yaml`, `NearDedupConfig`).
"""
from __future__ import annotations

from typing import Any

from data_pipeline.dedup.near_buckets import BucketStep
from data_pipeline.dedup.near_clusters import ClusterStep, read_report
from data_pipeline.dedup.near_config import NearDedupConfig
from data_pipeline.dedup.near_filter import NearFilterStep
from data_pipeline.dedup.near_signatures import SignatureStep
from data_pipeline.stage import Stage, StageContext

STAGE_NAME = "near_dedup"


class NearDedupStage(Stage):
    def __init__(self, name: str = STAGE_NAME):
        super().__init__(name, [SignatureStep(), BucketStep(), ClusterStep(), NearFilterStep()])

    def extra_stats(self, ctx: StageContext) -> dict[str, Any]:
        cfg = NearDedupConfig.from_dict(ctx.cfg)
        bands, rows = cfg.band_rows
        return {"lsh": {"bands": bands, "rows": rows, "num_perm": cfg.num_perm, "threshold": cfg.threshold},
                "duplicate_clusters": read_report(ctx)}


def build_stage(section: dict[str, Any] | None = None) -> Stage:
    """Runner entry point: validates the `near_dedup` section now, so a wrong key stops the run before any work."""
    NearDedupConfig.from_dict(section)
    return NearDedupStage()
