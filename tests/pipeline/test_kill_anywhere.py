"""SIGKILL `refact-pipeline` at random moments in every stage (two kills per stage, tokenization included), rerun
the same command each time, and get byte for byte the documents, drops, held-out documents, tokenizer and token
shards of an uninterrupted run.

Units are paced (a pause before each, as in test_resume.py) so that a kill lands inside the stage it aims at
even on a loaded machine; the moment within the stage is random (seeded and printed, to replay a failure).
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_pipeline.stages import STAGE_ORDER

from pipeline_corpus import build_corpus, write_jsonl, write_parquet

ARGS = ["progress=false", "workers=2", "ingest.files_per_shard=3", "exact_dedup.buckets=4", "tokenizer.train=true",
        "tokenizer.vocab_size=320", "holdout.fraction=0.3", "holdout.max_documents=2"]
PACED_CLI = """
import sys, time
import data_pipeline.executor as executor
execute = executor.execute_unit
def paced(stage, ctx, step_index, unit):
    time.sleep(0.05)
    return execute(stage, ctx, step_index, unit)
executor.execute_unit = paced
from data_pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""
KILLS_PER_STAGE = 2


def start(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", PACED_CLI, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, env=env)


def kill_in_stage(args: list[str], out: Path, index: int, stage: str, rng: random.Random) -> str:
    """Start the run, wait until `stage` has begun, SIGKILL it after a random pause; what happened, for the log."""
    proc = start(args)
    stage_dir = out / "stages" / f"{index:02d}_{stage}"
    deadline = time.monotonic() + 300
    try:
        while not stage_dir.is_dir():
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before stage {stage}: {proc.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, f"stage {stage} did not start"
            time.sleep(0.002)
        pause = rng.uniform(0.0, 0.4)
        time.sleep(pause)
        finished = proc.poll() is not None
        if not finished:
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert finished or proc.returncode == -signal.SIGKILL
    return f"{stage}+{pause:.3f}s" + (" (finished first)" if finished else "")


def files(directory: Path, root: Path) -> dict[str, bytes]:
    """Every file's bytes. No output file may name the output directory itself (the manifest records its inputs
    relative to it), so two output directories of the same run compare byte for byte."""
    out = {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
    assert not [name for name, data in out.items() if str(root).encode() in data]
    return out


@pytest.mark.slow
def test_sigkill_at_random_moments_in_every_stage_then_rerun_gives_identical_bytes(tmp_path):
    corpus = tmp_path / "corpus"
    build_corpus(corpus, set())
    write_jsonl(tmp_path / "records.jsonl")
    write_parquet(tmp_path / "stack.parquet")
    inputs = f"input=[{corpus},{tmp_path / 'records.jsonl'},{tmp_path / 'stack.parquet'}]"
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    proc = start([inputs, f"output={reference}", *ARGS])
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-2000:]
    proc.stderr.close()

    seed = int(os.environ.get("KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    args = [inputs, f"output={resumed}", *ARGS]
    kills = [kill_in_stage(args, resumed, index, stage, rng)
             for index, stage in enumerate(STAGE_ORDER) for _ in range(KILLS_PER_STAGE)]
    landed = [k for k in kills if "finished" not in k]
    assert len(landed) >= 10, f"seed {seed}: {kills}"
    proc = start(args)
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-2000:]
    proc.stderr.close()

    for part in ("documents", "dropped", "heldout", "shards", "tokenizer"):
        ref, got = files(reference / part, reference), files(resumed / part, resumed)
        assert ref, part
        assert sorted(got) == sorted(ref), f"seed {seed}, kills {kills}: {part} file names differ"
        differ = [name for name in ref if ref[name] != got[name]]
        assert not differ, f"seed {seed}, kills {kills}: {part} bytes differ in {differ}"
    stats = [json.loads((d / "stats.json").read_text()) for d in (reference, resumed)]
    for run_stats in stats:
        for stage in run_stats["stages"]:
            stage["extra"].pop("cpu_seconds")  # timings differ between runs; nothing else may
    assert stats[0] == stats[1], f"seed {seed}, kills {kills}"
