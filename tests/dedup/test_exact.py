"""Exact dedup: the normalisation modes, the config check, and a `whitespace` run across shards."""
import json

import pyarrow.parquet as pq
import pytest

from data_pipeline.dedup.exact import build_stage, normalise
from data_pipeline.executor import run_stage
from data_pipeline.records import Document, write_documents
from data_pipeline.stage import StageContext


def test_normalise_modes():
    text = "\n  a  b \r\nc\t\n\n"
    assert normalise(text, "none") == text
    assert normalise(text, "lines") == "a  b\nc"
    assert normalise(text, "whitespace") == "a b c"


def test_config_accepts_the_yaml_keys_and_names_the_wrong_ones():
    assert build_stage({"enabled": True, "normalize": "whitespace", "buckets": 4}).name == "exact_dedup"
    with pytest.raises(ValueError, match=r"exact_dedup: unknown key\(s\) \['bucket'\]"):
        build_stage({"bucket": 4})
    with pytest.raises(ValueError, match="normalize='tabs'"):
        build_stage({"normalize": "tabs"})
    with pytest.raises(ValueError, match=r"buckets must be in \[1, 4096\]"):
        build_stage({"buckets": 0})


def test_whitespace_mode_across_shards(tmp_path):
    texts = [["a b", "c"], ["a\n  b", "d"], ["c ", "a\tb"]]
    paths = []
    for s, shard in enumerate(texts):
        paths.append(tmp_path / "in" / f"part-{s:05d}.parquet")
        docs = [Document(f"{s}{i}", t, "text", None, "src", f"f{s}{i}") for i, t in enumerate(shard)]
        write_documents(paths[-1], docs)
    cfg = {"normalize": "whitespace", "buckets": 2}
    ctx = StageContext("exact_dedup", 0, tmp_path / "out", tuple(paths), cfg, {})
    run_stage(build_stage(cfg), ctx, workers=1, progress=False)
    kept = [pq.read_table(p).column("id").to_pylist() for p in sorted(ctx.documents_dir.glob("part-*.parquet"))]
    assert kept == [["00", "01"], ["11"], []]  # "a b" (00) and "c" (01) are kept, their copies dropped
    stats = json.loads(ctx.stats_path.read_text())
    assert stats["dropped"] == {"duplicate": 3}
    assert (stats["extra"]["duplicate_groups"], stats["extra"]["duplicates"]) == (2, 3)


def test_records_that_repeat_an_id_are_told_apart_by_row(tmp_path):
    """A JSONL input with ids 1,1,2,3,3 and texts a,a,b,b,unique: only the second `a` and the second `b` are
    duplicates. Keyed by id, both copies of `a` were dropped (the text lost) and so was the unique text of id 3."""
    texts = [("1", "a"), ("1", "a"), ("2", "b")], [("3", "b"), ("3", "unique")]
    paths = []
    for s, shard in enumerate(texts):
        paths.append(tmp_path / "in" / f"part-{s:05d}.parquet")
        write_documents(paths[-1], [Document(i, t, "text", None, "src", None) for i, t in shard])
    ctx = StageContext("exact_dedup", 0, tmp_path / "out", tuple(paths), {"buckets": 2}, {})
    run_stage(build_stage({"buckets": 2}), ctx, workers=1, progress=False)
    kept = [pq.read_table(p).column("text").to_pylist() for p in sorted(ctx.documents_dir.glob("part-*.parquet"))]
    assert kept == [["a", "b"], ["unique"]]
    assert json.loads(ctx.stats_path.read_text())["dropped"] == {"duplicate": 2}
