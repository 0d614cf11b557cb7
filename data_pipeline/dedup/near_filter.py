"""Near-dedup step 4 of 4: per input shard, keep every document except the near-duplicates step 3 listed.

Dropped documents are recorded with reason `near_duplicate_of:<kept id>`; the stage's stats count them under the
single reason `near_duplicate` (one counter, not one per cluster), with example paths.
"""
from __future__ import annotations

import pyarrow.parquet as pq

from data_pipeline.dedup.near_files import FILTER_STEP, removal_path
from data_pipeline.records import read_documents
from data_pipeline.stage import ShardOutput, StageContext, Step, shard_units
from data_pipeline.stats import EXAMPLES_PER_REASON, UnitStats

DROP_REASON_PREFIX = "near_duplicate_of:"
STATS_REASON = "near_duplicate"


def load_removals(ctx: StageContext, shard: int) -> dict[int, str]:
    path = removal_path(ctx, shard)
    if not path.exists():
        raise FileNotFoundError(f"{path}: removal list missing; run the near_dedup 'clusters' step first")
    table = pq.read_table(str(path), columns=["row", "kept_id"])
    return dict(zip(table.column("row").to_pylist(), table.column("kept_id").to_pylist()))


def collapse_reasons(stats: UnitStats, prefix: str, reason: str) -> UnitStats:
    """Merge every drop reason starting with `prefix` into one `reason` counter (examples included)."""
    for key in [k for k in stats.dropped if k.startswith(prefix)]:
        stats.dropped[reason] = stats.dropped.get(reason, 0) + stats.dropped.pop(key)
        stats.dropped_bytes[reason] = stats.dropped_bytes.get(reason, 0) + stats.dropped_bytes.pop(key, 0)
        examples = stats.examples.setdefault(reason, [])
        for path in stats.examples.pop(key, []):
            if len(examples) < EXAMPLES_PER_REASON:
                examples.append(path)
    return stats


def filter_shard(ctx: StageContext, shard: int) -> UnitStats:
    removals = load_removals(ctx, shard)
    unit = shard_units(ctx)[shard]
    with ShardOutput(ctx, unit) as out:
        for row, doc in enumerate(read_documents(ctx.input_shards[shard])):
            kept_id = removals.get(row)
            if kept_id is None:
                out.keep(doc)
            else:
                out.drop(doc, DROP_REASON_PREFIX + kept_id)
    stats = collapse_reasons(out.stats, DROP_REASON_PREFIX, STATS_REASON)
    stats.extra = {"near_duplicates": len(removals)}
    return stats


class NearFilterStep(Step):
    name = FILTER_STEP

    def units(self, ctx: StageContext) -> list[str]:
        return shard_units(ctx)

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        return filter_shard(ctx, int(unit))
