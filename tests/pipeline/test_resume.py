"""Kill `refact-pipeline` (SIGKILL) in the middle of a stage, twice, resume it, and get the uninterrupted output."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from data_pipeline.cli import main
from data_pipeline.pipeline import lock_output

from pipeline_corpus import build_corpus

ARGS = ["progress=false", "workers=1", "ingest.files_per_shard=2", "exact_dedup.buckets=4"]


def rows(directory: Path) -> list[tuple]:
    table = pq.read_table(str(directory)).to_pylist()
    return sorted(tuple(sorted(r.items())) for r in table)


# The real command, with units of the two stages the test kills slowed down (a pause before each unit) so that the
# kill lands inside them even on a loaded machine; nothing else is changed. Quality runs in one streamed pass with
# license..decontam, whose units run under the chain's last stage (decontam).
SLOWED_CLI = """
import sys, time
import data_pipeline.executor as executor
execute = executor.execute_unit
def paced(stage, ctx, step_index, unit):
    if ctx.name in ("decontam", "near_dedup"):
        time.sleep(0.04)
    return execute(stage, ctx, step_index, unit)
executor.execute_unit = paced
from data_pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_until(args: list[str], marker_glob: str, out: Path, timeout: float = 120) -> None:
    """Start the pipeline in a subprocess; SIGKILL it as soon as a unit marker matching `marker_glob` appears."""
    proc = subprocess.Popen([sys.executable, "-c", SLOWED_CLI, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not list(out.glob(marker_glob)):
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no marker appeared in time"
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_kill_mid_stage_and_resume(tmp_path):
    corpus = tmp_path / "corpus"
    build_corpus(corpus, set())
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert main([f"input={corpus}", f"output={reference}", *ARGS]) == 0

    args = [f"input={corpus}", f"output={resumed}", *ARGS]
    # 1) killed inside the one-step quality stage
    run_until(args, "stages/02_quality/markers/filter/*.done", resumed)
    assert not (resumed / "stages" / "02_quality" / "_SUCCESS").exists()
    # 2) resumed, and killed again inside the second step (25 LSH bands) of near dedup
    run_until(args, "stages/07_near_dedup/markers/buckets/*.done", resumed)
    assert (resumed / "stages" / "02_quality" / "_SUCCESS").exists()
    assert (resumed / "stages" / "07_near_dedup" / "markers" / "signatures").is_dir()
    assert not (resumed / "stages" / "07_near_dedup" / "_SUCCESS").exists()
    # 3) resumed to the end: finished units are not redone (the chain's documents are the last filter stage's)
    assert not (resumed / "stages" / "02_quality" / "documents").exists()  # no Parquet copy per filter stage
    chain_shard = next((resumed / "stages" / "05_decontam" / "documents").glob("part-*.parquet"))
    mtime = chain_shard.stat().st_mtime_ns
    assert main(args) == 0
    assert chain_shard.stat().st_mtime_ns == mtime

    assert rows(resumed / "documents") == rows(reference / "documents")
    assert rows(resumed / "dropped") == rows(reference / "dropped")
    stats = [json.loads((d / "stats.json").read_text())["stages"] for d in (reference, resumed)]
    for run_stats in stats:
        for stage in run_stats:
            assert stage["extra"].pop("cpu_seconds")  # timings differ between runs; everything else must not
    assert stats[0] == stats[1]


def test_a_second_run_into_the_same_output_is_refused_while_the_first_holds_it(tmp_path, capsys):
    # two local runs into one output both exited 0, each doing every unit (and keep_intermediate=false deleting what
    # the other read); array tasks share the directory by design
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.py").write_text("def f(x):\n    return x + 1\n")
    out = tmp_path / "out"
    args = [f"input={tmp_path / 'in'}", f"output={out}", "progress=false", "workers=1", "license.allow_unknown=true"]
    out.mkdir()
    with lock_output(out, shared=False):  # a local run in progress, as another process holds it
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"output={out} is in use by another refact-pipeline (pid {os.getpid()} on " in err
        assert main([*args, "stage=ingest", "task=0", "n_tasks=2"]) == 2
        assert not (out / "stages").exists()
    with lock_output(out, shared=True):  # another array task of the run
        assert main([*args, "stage=ingest", "task=0", "n_tasks=2"]) == 0
        assert main(args) == 2
        assert "in use by another refact-pipeline (array tasks" in capsys.readouterr().err
    assert main(args) == 0  # the lock goes with the run that held it
    assert main(args) == 0
