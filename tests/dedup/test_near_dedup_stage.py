"""The four near-dedup steps end to end over several shards: exact clusters, no-shingle documents, reruns."""
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_pipeline.dedup.near_dedup import build_stage
from data_pipeline.executor import run_stage
from data_pipeline.stage import StageContext

from .corpus import build_corpus

ALL_IDS = {"a0", "u00", "c1", "short0", "half0", "u10", "a1", "b0", "b1", "empty", "a2", "c0", "short1", "half1", "u20"}


def make_ctx(tmp_path: Path, cfg: dict | None = None, out: str = "out") -> tuple[StageContext, dict[str, str]]:
    paths, expected = build_corpus(tmp_path / "in")
    ctx = StageContext(name="near_dedup", index=7, root=tmp_path / out, input_shards=tuple(paths), cfg=cfg or {})
    return ctx, expected


def outputs(ctx: StageContext) -> tuple[list[list[str]], dict[str, str]]:
    """Kept ids per output shard (in order) and {dropped id: reason} from the dropped records."""
    kept = [pq.read_table(p).column("id").to_pylist() for p in sorted(ctx.documents_dir.glob("part-*.parquet"))]
    dropped = {}
    for p in sorted((ctx.root / "dropped").glob("near_dedup-*.parquet")):
        for row in pq.read_table(p).to_pylist():
            assert row["stage"] == "near_dedup"
            dropped[row["id"]] = row["reason"]
    return kept, dropped


@pytest.mark.parametrize("verify", [True, False])
def test_end_to_end_exact_clusters(tmp_path, verify):
    ctx, expected = make_ctx(tmp_path, cfg={"verify_jaccard": verify})
    assert run_stage(build_stage(ctx.cfg), ctx, workers=2, log=lambda _: None).complete
    kept, dropped = outputs(ctx)
    assert dropped == {d: f"near_duplicate_of:{k}" for d, k in expected.items()}
    assert kept == [["a0", "u00", "c1", "short0", "half0"], ["u10", "b0", "empty"], ["short1", "half1", "u20"], []]
    stats = json.loads(ctx.stats_path.read_text())
    assert (stats["docs_in"], stats["kept"], stats["dropped"]) == (15, 11, {"near_duplicate": 4})
    assert stats["extra"]["no_shingles"] == 3  # "x = 1" twice and "": kept, never clustered
    clusters = stats["extra"]["duplicate_clusters"]
    assert clusters["size_histogram"] == {"2": 2, "3": 1}
    assert clusters["largest"][0]["kept"] == {"id": "a0", "path": "src/a0.py"}
    assert [m["id"] for m in clusters["largest"][0]["members"]] == ["a0", "a1", "a2"]
    assert stats["extra"]["lsh"] == {"bands": 25, "rows": 10, "num_perm": 256, "threshold": 0.7}


def test_rerun_is_idempotent_and_resumes(tmp_path):
    ctx, _ = make_ctx(tmp_path)
    stage = build_stage({})
    run_stage(stage, ctx, log=lambda _: None)
    first = outputs(ctx)
    signature_file = ctx.scratch_dir("signatures") / "00001.sig.npy"
    mtime = signature_file.stat().st_mtime_ns
    assert run_stage(stage, ctx, log=lambda _: None).skipped
    # Simulate a run killed during the filter step: one unit's output and marker gone, no _SUCCESS.
    ctx.success_path.unlink()
    ctx.marker_path("filter", "00002").unlink()
    ctx.output_path("00002").unlink()
    result = run_stage(stage, ctx, log=lambda _: None)
    assert result.complete and not result.skipped
    assert outputs(ctx) == first
    assert signature_file.stat().st_mtime_ns == mtime  # finished steps were not redone


def test_array_tasks_and_partitions_give_the_same_result(tmp_path):
    """Task i of N (as SLURM array tasks run it) with bucket partitions reproduces the local single-process run."""
    local, _ = make_ctx(tmp_path, out="local")
    run_stage(build_stage({}), local, log=lambda _: None)
    ctx, _ = make_ctx(tmp_path, cfg={"bucket_partitions": 3}, out="array")
    stage = build_stage(ctx.cfg)
    for _ in range(4):  # one round per step: each round, every task does its share of the current step
        for task in range(3):
            run_stage(stage, ctx, task=task, n_tasks=3, log=lambda _: None)
    assert ctx.success_path.exists()
    assert outputs(ctx) == outputs(local)


def test_unknown_config_key_stops_before_work():
    with pytest.raises(ValueError, match="near_dedup: unknown key.*'num_perms'"):
        build_stage({"num_perms": 128})
