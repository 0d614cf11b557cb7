"""Near-dedup step 1 of 4: MinHash signatures of every document of one input shard (one unit per shard).

Streams the shard in batches (never the whole shard's text), writes the signature matrix through a memory map and
the light per-row metadata (id, path, source, shingle count) next to it. Documents with fewer words than the
n-gram size have no shingles: they are counted (`no_shingles`) and later kept without being clustered, because
their empty sets would otherwise all collide.
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from data_pipeline.dedup.minhash import MinHasher
from data_pipeline.dedup.near_config import NearDedupConfig
from data_pipeline.dedup.near_files import META_SCHEMA, SIGNATURES_STEP, meta_path, signature_path
from data_pipeline.stage import StageContext, Step, shard_units, temp_path
from data_pipeline.stats import UnitStats

EMPTY_SIGNATURE = np.iinfo(np.uint32).max


def compute_shard_signatures(ctx: StageContext, shard: int, cfg: NearDedupConfig) -> UnitStats:
    source = ctx.input_shards[shard]
    hasher = MinHasher(cfg)
    pf = pq.ParquetFile(str(source))
    n_rows = pf.metadata.num_rows
    sig_final, meta_final = signature_path(ctx, shard), meta_path(ctx, shard)
    sig_final.parent.mkdir(parents=True, exist_ok=True)
    sig_tmp, meta_tmp = temp_path(sig_final), temp_path(meta_final)
    sigs = np.lib.format.open_memmap(sig_tmp, mode="w+", dtype=np.uint32, shape=(n_rows, cfg.num_perm))
    stats = UnitStats()
    no_shingles = shingles_total = 0
    row = 0
    try:
        with pq.ParquetWriter(str(meta_tmp), META_SCHEMA) as meta_writer, tqdm(
            total=n_rows, desc=f"near_dedup signatures {shard:05d}", unit="doc", leave=False, disable=None
        ) as bar:
            columns = ["id", "text", "path", "source"]
            for batch in pf.iter_batches(batch_size=cfg.batch_size, columns=columns):
                texts = batch.column("text").to_pylist()
                if any(t is None for t in texts):
                    bad = batch.column("id")[[t is None for t in texts].index(True)].as_py()
                    raise ValueError(f"{source}: document {bad!r} has a null text; the previous stage must drop it")
                result = hasher.signatures(texts)
                n = len(texts)
                block = sigs[row : row + n]
                block[:] = EMPTY_SIGNATURE
                block[result.has_shingles] = result.signatures
                counts = result.shingle_counts
                meta = pa.table(
                    {
                        "id": batch.column("id"),
                        "path": batch.column("path"),
                        "source": batch.column("source"),
                        "shingles": pa.array(np.minimum(counts, np.iinfo(np.int32).max).astype(np.int32)),
                    },
                    schema=META_SCHEMA,
                )
                meta_writer.write_table(meta)
                no_shingles += int(n - result.has_shingles.sum())
                shingles_total += int(counts.sum())
                row += n
                bar.update(n)
        if row != n_rows:
            raise ValueError(f"{source}: Parquet metadata says {n_rows} rows but {row} were read; rewrite the shard")
        sigs.flush()
        del sigs
        os.replace(meta_tmp, meta_final)
        os.replace(sig_tmp, sig_final)
    except BaseException:
        sig_tmp.unlink(missing_ok=True)
        meta_tmp.unlink(missing_ok=True)
        raise
    stats.extra = {"signed": n_rows - no_shingles, "no_shingles": no_shingles, "shingles": shingles_total}
    return stats


class SignatureStep(Step):
    name = SIGNATURES_STEP

    def units(self, ctx: StageContext) -> list[str]:
        return shard_units(ctx)

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        return compute_shard_signatures(ctx, int(unit), NearDedupConfig.from_dict(ctx.cfg))
