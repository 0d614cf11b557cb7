"""A near-dedup scratch file that a later step reads is gone while the marker of the unit that wrote it says done:
removed by hand, or a marker that records no files (an older run's, or one edited). Markers that record the file are
tests/pipeline/test_damaged_scratch.py's case (redone before the step starts); here the step finds the file missing
itself and the unit that wrote it is done again, said in one line. Before: FileNotFoundError tracebacks through
`refact-pipeline`. And `step=NAME` that cannot run (no such step, an earlier step not complete) is one line, exit 2."""
import json
import shutil
from pathlib import Path

import pytest

from data_pipeline.cli import main

from pipeline_corpus import build_corpus

ARGS = ["progress=false", "ingest.files_per_shard=2", "exact_dedup.buckets=4", "tokenizer=null"]
ND = "stages/07_near_dedup"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("missing")
    build_corpus(base / "corpus", set())
    assert main([f"input={base / 'corpus'}", f"output={base / 'ref'}", "workers=1", *ARGS]) == 0
    return base


def outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for part in ("documents", "dropped")
            for p in sorted((out / part).iterdir())}


def rerun(reference: Path, tmp_path: Path, capsys, remove: list[str], unrecorded: str, *extra: str) -> tuple[int, str]:
    """A copy of the reference output with `remove` removed (globs) and the marker `unrecorded` recording no files."""
    out = tmp_path / "out"
    shutil.copytree(reference / "ref", out)
    for pattern in remove:
        for path in out.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if unrecorded:
        (out / ND / "markers" / unrecorded).write_text(json.dumps({"files": {}}))
    capsys.readouterr()
    rc = main([f"input={reference / 'corpus'}", f"output={out}", *ARGS, *extra])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("missing, unrecorded, later, workers", [
    # was: FileNotFoundError: ...: removal list missing; run the near_dedup 'clusters' step first (traceback)
    ("scratch/clusters/00001.parquet", "clusters/all.done", "filter/00001.done", 1),
    # was: FileNotFoundError: bucket file missing; run the near_dedup 'buckets' step first (traceback)
    ("scratch/buckets/b004-p000.npy", "buckets/b004-p000.done", "clusters/all.done", 1),
    # was: FileNotFoundError: [Errno 2] No such file or directory (load_band, traceback)
    ("scratch/signatures/00001.sig.npy", "signatures/00001.done", "buckets/b003-p000.done", 1),
    # in worker processes (the RedoUnits comes back pickled)
    ("scratch/signatures/00001.meta.parquet", "signatures/00001.done", "buckets/b00*.done", 2),
])
def test_a_missing_scratch_file_is_made_again_by_its_unit(reference, tmp_path, capsys, missing, unrecorded, later,
                                                          workers):
    rc, err = rerun(reference, tmp_path, capsys, [f"{ND}/_SUCCESS", f"{ND}/{missing}", f"{ND}/markers/{later}"],
                    unrecorded, f"workers={workers}")
    assert rc == 0, err
    assert "Traceback" not in err
    assert f"{tmp_path / 'out' / ND / missing} is missing; doing 1 unit(s) again" in err
    assert outputs(tmp_path / "out") == outputs(reference / "ref")


@pytest.mark.parametrize("remove, step, message", [
    # the clusters marker records the removal list: redo_damaged forgets it, and step=filter cannot run alone
    ([f"{ND}/scratch/clusters/00001.parquet", f"{ND}/markers/filter/00001.done"], "filter",
     "step 'filter' needs step 'clusters' complete first (1 of 1 units missing); run step=clusters first"),
    ([f"{ND}/scratch", f"{ND}/markers/filter"], "filter", "step 'filter' needs step 'signatures' complete first"),
    ([], "nosuch", "stage 'near_dedup' has no step 'nosuch'; its steps are ['signatures', 'buckets', 'clusters'"),
])
def test_a_step_that_cannot_run_alone_is_one_line(reference, tmp_path, capsys, remove, step, message):
    """Was: RuntimeError / ValueError tracebacks from the executor."""
    rc, err = rerun(reference, tmp_path, capsys, [f"{ND}/_SUCCESS", *remove], "", "stage=near_dedup", f"step={step}")
    assert rc == 2, err
    assert "Traceback" not in err
    assert message in err.splitlines()[-1]


def test_a_step_of_a_streamed_chain_that_is_not_its_one_step_is_one_line(reference, tmp_path, capsys):
    rc, err = rerun(reference, tmp_path, capsys, ["stages/05_decontam/_SUCCESS"], "", "stage=license..decontam",
                    "step=signatures")
    assert rc == 2 and "Traceback" not in err, err
    assert "stage 'license..decontam' has one step, 'filter', not 'signatures'" in err.splitlines()[-1]
