"""The filter stages as one streamed pass (data_pipeline/chain.py): the same documents, drops and per-stage stats as
the stages run one by one, as array tasks too, and the Slurm plan that runs it."""
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_pipeline.cli import main

from pipeline_corpus import build_corpus

REPO = Path(__file__).resolve().parents[2]
ARGS = ["progress=false", "ingest.files_per_shard=3", "exact_dedup.buckets=4"]
FILTERS = ("license", "quality", "english", "topic", "decontam")


def rows(directory: Path) -> list[tuple]:
    return sorted(tuple(sorted(r.items())) for r in pq.read_table(str(directory)).to_pylist())


def stage_stats(out: Path) -> list[dict]:
    stages = json.loads((out / "stats.json").read_text())["stages"]
    for stage in stages:
        assert stage["extra"].pop("cpu_seconds")
    return stages


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    build_corpus(root / "corpus", set())
    return root


@pytest.fixture(scope="module")
def streamed(corpus):
    out = corpus / "streamed"
    assert main([f"input={corpus / 'corpus'}", f"output={out}", "workers=2", *ARGS]) == 0
    return out


def test_one_pass_equals_the_stages_one_by_one(corpus, streamed):
    one_by_one = corpus / "one_by_one"
    args = [f"input={corpus / 'corpus'}", f"output={one_by_one}", "workers=1", *ARGS]
    for stage in ("ingest", *FILTERS, "exact_dedup", "near_dedup"):
        assert main([*args, f"stage={stage}"]) == 0
    assert rows(streamed / "documents") == rows(one_by_one / "documents")
    assert rows(streamed / "dropped") == rows(one_by_one / "dropped")
    assert stage_stats(streamed) == stage_stats(one_by_one)
    dropped_by = {r["stage"] for r in pq.read_table(str(streamed / "dropped")).to_pylist()}
    assert {"license", "quality", "english", "topic"} <= dropped_by  # each drop tagged with its own stage
    # only the chain's last stage wrote documents; every stage of it has its markers, stats and _SUCCESS
    work = {d.name.split("_", 1)[1]: d for d in (streamed / "stages").iterdir()}
    assert [name for name in FILTERS if (work[name] / "documents").exists()] == ["decontam"]
    for name in FILTERS:
        assert (work[name] / "_SUCCESS").exists() and list((work[name] / "markers" / "filter").glob("*.done"))


def test_array_tasks_run_the_chain_and_match_the_local_run(corpus, streamed, capsys):
    arr = corpus / "array"
    args = [f"input={corpus / 'corpus'}", f"output={arr}", "workers=1", *ARGS]
    assert main([*args, "stage=ingest"]) == 0
    assert main([*args, "stage=license..decontam", "step=filter", "task=0", "n_tasks=2"]) == 0
    assert "units left to other tasks" in capsys.readouterr().err
    assert not (arr / "stages" / "01_license" / "_SUCCESS").exists()
    assert main([*args, "stage=license..decontam", "step=filter", "task=1", "n_tasks=2"]) == 0
    for stage in ("exact_dedup", "near_dedup"):
        assert main([*args, f"stage={stage}"]) == 0
    assert rows(arr / "documents") == rows(streamed / "documents")
    assert rows(arr / "dropped") == rows(streamed / "dropped")
    assert stage_stats(arr) == stage_stats(streamed)


def test_a_stage_alone_after_the_chain_is_refused_without_its_input(corpus, capsys):
    out = corpus / "partial"
    args = [f"input={corpus / 'corpus'}", f"output={out}", "workers=1", *ARGS]
    assert main([*args, "stage=ingest"]) == 0 and main([*args, "stage=license"]) == 0
    assert main([*args, "stage=quality..decontam"]) == 2  # not a chain of this config: license..decontam is
    assert "license..decontam" in capsys.readouterr().err
    # the chain starts after the stage already run alone, from its documents
    assert main([*args, "stage=license..decontam"]) == 0
    assert "one streamed pass: quality, english, topic, decontam" in capsys.readouterr().err
    # a stage of a fused chain has no documents for the next stage run alone to read
    (out / "stages" / "05_decontam" / "_SUCCESS").unlink()
    assert main([*args, "stage=decontam"]) == 2
    assert "not on disk" in capsys.readouterr().err


def test_slurm_plan_runs_the_filters_as_one_array(corpus):
    plan = subprocess.run([sys.executable, str(REPO / "launch" / "slurm" / "pipeline_plan.py"),
                           f"input={corpus / 'corpus'}", f"output={corpus / 'plan'}"],
                          capture_output=True, text=True, check=True).stdout.split("\n")
    assert "license..decontam filter" in plan
    assert not any(line.split(" ")[0] in FILTERS for line in plan)
    no_topic = subprocess.run([sys.executable, str(REPO / "launch" / "slurm" / "pipeline_plan.py"),
                               f"input={corpus / 'corpus'}", f"output={corpus / 'plan2'}", "quality.enabled=false"],
                              capture_output=True, text=True, check=True).stdout
    assert "license..decontam filter" in no_topic
