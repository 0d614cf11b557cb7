"""Hostile or mistaken dedup configs and inputs: refused before any work, or handled, with a line naming the fix."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_pipeline.dedup.exact import build_stage as exact_stage
from data_pipeline.dedup.near_dedup import build_stage as near_stage
from data_pipeline.executor import run_stage
from data_pipeline.records import Document, write_documents
from data_pipeline.stage import StageContext


@pytest.mark.parametrize("section, message", [
    # accepted before: bands <= 0 or rows <= 0 made no bucket unit (or empty bands): nothing was ever deduplicated
    ({"bands": -1, "rows": -5}, r"bands x rows = -1 x -5: both must be >= 1"),
    ({"bands": 0, "rows": 10}, r"bands x rows = 0 x 10"),
    ({"bands": 10, "rows": 0}, r"bands x rows = 10 x 0"),
    # failed only in the signatures step, after the run had started
    ({"seed": -1}, r"seed must be in \[0, 2\*\*32 - 1\], got -1"),
    ({"seed": 2**40}, r"seed must be in"),
    ({"token_pattern": "["}, r"token_pattern='\[' is not a regular expression"),
    # num_perm=16384 took 16 s and 3.8 GB to choose bands x rows before any work; more ran out of memory
    ({"num_perm": 4097}, r"num_perm must be in \[1, 4096\]"),
    # silently wrong: report_clusters=-1 listed all clusters but one; NaN or negative weights chose 1 x 1 or 256 x 1
    ({"report_clusters": -1}, r"report_clusters must be >= 0"),
    ({"report_examples": -3}, r"report_examples must be >= 0"),
    ({"false_positive_weight": float("nan")}, r"false_positive_weight, false_negative_weight = \(nan, 0.5\)"),
    ({"false_positive_weight": -1.0}, r"use finite values >= 0"),
    ({"false_positive_weight": 0.0, "false_negative_weight": 0.0}, r"not both 0"),
])
def test_near_dedup_refuses_out_of_range_values_before_work(section, message):
    with pytest.raises(ValueError, match=message):
        near_stage(section)


def test_near_dedup_accepts_the_bounds():
    for section in ({"seed": 0}, {"seed": 2**32 - 1}, {"num_perm": 1}, {"bands": 1, "rows": 256},
                    {"report_clusters": 0}, {"false_negative_weight": 0.0}):
        near_stage(section)


def test_exact_dedup_refuses_a_bucket_count_that_makes_millions_of_files():
    # buckets=2000 wrote 10,000 files and took 3.6 s for one 2-document shard; 10**6 would have run ~30 min
    with pytest.raises(ValueError, match=r"exact_dedup.buckets must be in \[1, 4096\], got 1000000"):
        exact_stage({"buckets": 10**6})
    exact_stage({"buckets": 4096})


def _shard_with_null_text(path):
    write_documents(path, [Document("a", "x", "text", None, "src", None), Document("b", "y", "text", None, "src", None)])
    table = pq.read_table(path)
    column = table.schema.get_field_index("text")
    pq.write_table(table.set_column(column, "text", pa.array(["x", None], table.schema.field("text").type)), path)


@pytest.mark.parametrize("build", [exact_stage, near_stage])
def test_a_null_text_names_the_shard_and_the_document(tmp_path, build):
    """Exact dedup failed with AttributeError: 'NoneType' object has no attribute 'replace' (no file, no id)."""
    path = tmp_path / "in" / "part-00000.parquet"
    _shard_with_null_text(path)
    ctx = StageContext("dedup", 0, tmp_path / "out", (path,), {}, {})
    with pytest.raises(RuntimeError, match=r"part-00000.parquet: document 'b' has a null text"):
        run_stage(build({}), ctx, workers=1, progress=False, log=lambda _: None)


def _identical(tmp_path, n, shards, text):
    paths = []
    for s in range(shards):
        paths.append(tmp_path / "in" / f"part-{s:05d}.parquet")
        write_documents(paths[-1], [Document(f"{s}-{i}", text, "code", None, "src", None) for i in range(n // shards)])
    return paths


@pytest.mark.parametrize("build", [exact_stage, near_stage])
def test_one_giant_cluster_keeps_the_first_document(tmp_path, build):
    """20,000 identical documents over 4 shards: one cluster (measured 1.5 s near, 0.2 s exact; 200,000 over 20
    shards: 13 s and 0.8 GB near, 1.3 s exact)."""
    paths = _identical(tmp_path, 20_000, 4, "def f(x): return x + 1")
    ctx = StageContext("dedup", 0, tmp_path / "out", tuple(paths), {}, {})
    run_stage(build({}), ctx, workers=1, progress=False, log=lambda _: None)
    kept = [pq.read_table(p).column("id").to_pylist() for p in sorted(ctx.documents_dir.glob("part-*.parquet"))]
    assert kept == [["0-0"], [], [], []]
    assert sum(json.loads(ctx.stats_path.read_text())["dropped"].values()) == 19_999


def test_documents_without_shingles_are_all_kept(tmp_path):
    """An n-gram longer than every document: nothing is signed, nothing clustered, every copy kept."""
    paths = _identical(tmp_path, 6, 2, "one two three")
    ctx = StageContext("near_dedup", 0, tmp_path / "out", tuple(paths), {"ngram_size": 10_000}, {})
    run_stage(near_stage(ctx.cfg), ctx, workers=1, progress=False, log=lambda _: None)
    stats = json.loads(ctx.stats_path.read_text())
    assert (stats["kept"], stats["dropped"], stats["extra"]["no_shingles"]) == (6, {}, 6)
