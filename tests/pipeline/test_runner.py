"""The stage protocol and executor: units, markers, resume, SLURM-array task splits, exact dedup across shards."""
import json
import os
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_pipeline.dedup.exact import build_stage as build_exact
from data_pipeline.records import Document, read_documents, write_documents
from data_pipeline.executor import WorkerDied, reused_workers, run_stage
from data_pipeline.stage import Stage, StageContext, Step, filter_stage
from data_pipeline.stats import RedoUnits


def drop_odd(cfg):
    def f(doc):
        if doc.text == "boom":
            raise ZeroDivisionError("bad document")
        return "odd" if int(doc.id) % 2 else None
    return f


def make_shards(tmp_path, n_shards=4, per_shard=5, text=lambda i: f"document {i}"):
    paths = []
    for s in range(n_shards):
        docs = [Document(str(s * per_shard + i), text(s * per_shard + i), "text", None, "src", f"f{s * per_shard + i}")
                for i in range(per_shard)]
        paths.append(tmp_path / "in" / f"part-{s:05d}.parquet")
        write_documents(paths[-1], docs)
    return tuple(paths)


def ctx_for(root, inputs, name="odd", cfg=None):
    return StageContext(name, 1, root, inputs, cfg or {}, {})


def kept_ids(ctx):
    return sorted(int(d.id) for p in sorted(ctx.documents_dir.glob("part-*.parquet")) for d in read_documents(p))


def test_filter_stage_outputs_stats_markers_and_skip(tmp_path):
    inputs = make_shards(tmp_path)
    ctx = ctx_for(tmp_path / "out", inputs)
    stage = filter_stage("odd", drop_odd)
    assert run_stage(stage, ctx, workers=2, progress=False).complete
    assert kept_ids(ctx) == list(range(0, 20, 2))
    stats = json.loads(ctx.stats_path.read_text())
    assert (stats["docs_in"], stats["kept"], stats["dropped"]) == (20, 10, {"odd": 10})
    assert stats["examples"]["odd"] == ["f1", "f3", "f5", "f7", "f9"]
    dropped = pq.read_table(str(tmp_path / "out" / "dropped")).to_pylist()
    assert sorted(int(r["id"]) for r in dropped) == list(range(1, 20, 2))
    assert {r["stage"] for r in dropped} == {"odd"}
    assert run_stage(stage, ctx, progress=False).skipped


def test_resume_redoes_only_unfinished_units(tmp_path):
    inputs = make_shards(tmp_path)
    ctx = ctx_for(tmp_path / "out", inputs)
    stage = filter_stage("odd", drop_odd)
    run_stage(stage, ctx, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in ctx.documents_dir.iterdir()}
    # as if killed while unit 00002 was writing: no marker, no stage marker, a stale temporary file
    ctx.marker_path("filter", "00002").unlink()
    ctx.success_path.unlink()
    ctx.output_path("00002").unlink()
    (ctx.documents_dir / ".part-00002.parquet.tmp-999").write_bytes(b"half")
    run_stage(stage, ctx, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in ctx.documents_dir.glob("part-*.parquet")}
    assert {k for k in after if after[k] != before.get(k)} == {"part-00002.parquet"}
    assert kept_ids(ctx) == list(range(0, 20, 2))


def test_array_tasks_split_units_and_match_local_run(tmp_path):
    inputs = make_shards(tmp_path, n_shards=5)
    stage = filter_stage("odd", drop_odd)
    local = ctx_for(tmp_path / "local", inputs)
    run_stage(stage, local, progress=False)
    arr = ctx_for(tmp_path / "array", inputs)
    first = run_stage(stage, arr, task=0, n_tasks=2, progress=False)
    assert not first.complete and "2 of 5 units" in first.note
    assert sorted(p.stem for p in (arr.work_dir / "markers" / "filter").iterdir()) == ["00000", "00002", "00004"]
    assert run_stage(stage, arr, task=1, n_tasks=2, progress=False).complete
    assert kept_ids(arr) == kept_ids(local)
    assert json.loads(arr.stats_path.read_text())["dropped"] == json.loads(local.stats_path.read_text())["dropped"]
    assert set(json.loads(arr.stats_path.read_text())["extra"]["cpu_seconds"]) == {"filter"}


def test_a_raising_filter_drops_the_document_not_the_run(tmp_path):
    inputs = make_shards(tmp_path, n_shards=1, text=lambda i: "boom" if i == 2 else "fine")
    ctx = ctx_for(tmp_path / "out", inputs)
    run_stage(filter_stage("odd", drop_odd), ctx, progress=False)
    assert json.loads(ctx.stats_path.read_text())["dropped"] == {"odd": 2, "error:ZeroDivisionError": 1}


def test_a_failing_unit_names_stage_step_and_unit(tmp_path):
    inputs = make_shards(tmp_path, n_shards=2)
    inputs[1].write_bytes(b"not parquet")
    ctx = ctx_for(tmp_path / "out", inputs)
    with pytest.raises(RuntimeError, match=r"stage 'odd' step 'filter' unit 00001"):
        run_stage(filter_stage("odd", drop_odd), ctx, progress=False)
    assert ctx.marker_path("filter", "00000").exists() and not ctx.success_path.exists()


def test_exact_dedup_across_shards_keeps_smallest_id(tmp_path):
    texts = {0: "alpha\nbeta", 1: "gamma", 2: "alpha  \r\nbeta\n\n", 3: "gamma", 4: "delta", 5: "alpha\nbeta",
             6: "x", 7: "y", 8: "z"}
    inputs = make_shards(tmp_path, n_shards=3, per_shard=3, text=lambda i: texts[i])
    ctx = ctx_for(tmp_path / "out", inputs, name="exact_dedup", cfg={"buckets": 4})
    run_stage(build_exact({}), ctx, workers=2, progress=False)
    assert kept_ids(ctx) == [0, 1, 4, 6, 7, 8]
    stats = json.loads(ctx.stats_path.read_text())
    assert stats["dropped"] == {"duplicate": 3}
    assert (stats["extra"]["duplicate_groups"], stats["extra"]["duplicates"]) == (2, 3)


def test_numeric_drop_details_share_one_stats_key():
    from data_pipeline.stats import UnitStats, stats_key

    assert stats_key("off_topic:0.12") == "off_topic"
    assert stats_key("not_english:de") == "not_english:de"
    assert stats_key("near_duplicate_of:abc") == "near_duplicate_of:abc"
    stats = UnitStats()
    for score in ("0.10", "0.20", "0.33"):
        stats.add_dropped(f"off_topic:{score}", 10, "a.md")
    assert stats.dropped == {"off_topic": 3} and stats.dropped_bytes == {"off_topic": 30}


def kill_self_on_die(cfg):
    def f(doc):
        if doc.text == "die":  # as the OOM killer does to a worker process mid-unit
            os.kill(os.getpid(), signal.SIGKILL)
        return None
    return f


@pytest.mark.timeout(60)
def test_a_worker_killed_mid_unit_is_reported_not_waited_for(tmp_path):
    # multiprocessing.Pool replaced the dead worker and waited for its unit for ever: the run hung
    inputs = make_shards(tmp_path, n_shards=4, text=lambda i: "die" if i == 7 else "fine")
    ctx = ctx_for(tmp_path / "out", inputs, name="oom")
    with reused_workers(), pytest.raises(WorkerDied, match=r"stage 'oom' step 'filter': a worker process was killed"):
        run_stage(filter_stage("oom", kill_self_on_die), ctx, workers=2, progress=False)
    assert not ctx.success_path.exists() and not ctx.marker_path("filter", "00001").exists()
    # the rerun (memory freed, the document gone) finishes the stage
    write_documents(inputs[1], [Document("7", "fine", "text", None, "src", "f7")])
    with reused_workers():
        assert run_stage(filter_stage("oom", kill_self_on_die), ctx, workers=2, progress=False).complete


def die_on_two(job):
    if job == 2:  # as the OOM killer does to a tokenize worker mid-unit
        os.kill(os.getpid(), signal.SIGKILL)
    return {"index": job}


@pytest.mark.timeout(60)
def test_a_tokenize_worker_killed_is_one_line_not_a_hang(tmp_path, monkeypatch):
    # the tokenize stage had its own multiprocessing.Pool: the same endless wait for the dead worker's unit
    from concurrent.futures.process import BrokenProcessPool

    from data_pipeline import tokenization
    from data_pipeline.pipeline import run_problem

    monkeypatch.setattr(tokenization, "_tokenize_unit", die_on_two)
    with pytest.raises(BrokenProcessPool) as caught:
        tokenization._run_pass1([1, 2, 3], workers=2, progress=False)
    problem = run_problem(caught.value, tmp_path)
    assert problem is not None and "a worker process was killed (out of memory? see dmesg)" in str(problem)


class NeverThere(Step):
    """A unit whose input never comes back, however often the unit that writes it is redone."""
    name = "read"

    def units(self, ctx):
        return ["00000"]

    def run(self, ctx, unit):
        raise RedoUnits(f"{ctx.work_dir / 'scratch' / 'gone.npy'} is missing",
                        [ctx.unit_stats_path(self.name, unit)])


def test_a_redo_that_does_not_bring_the_file_back_stops_in_one_line(tmp_path):
    """Units whose files are missing are redone, and the stage run again: when the redo cannot bring the file back,
    that recursed until Python's recursion limit (a RecursionError traceback). Now three redos, then the damaged
    file is the run's one-line error."""
    from data_pipeline.pipeline import run_problem
    logged = []
    with pytest.raises(RedoUnits) as err:
        run_stage(Stage("never", [NeverThere()]), ctx_for(tmp_path / "out", ()), progress=False, log=logged.append)
    assert sum("doing 1 unit(s) again" in line for line in logged) == 3
    assert "gone.npy is missing" in str(run_problem(err.value, tmp_path / "out"))
