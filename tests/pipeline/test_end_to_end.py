"""`refact-pipeline` on a corpus built here: exactly which documents survive, and why the others do not."""
import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_pipeline.cli import main
from data_pipeline.shards import read_manifest

from pipeline_corpus import build_corpus, write_jsonl, write_parquet

CANDIDATES = {"repo_mit/README.md", "repo_mit/run_tool", "repo_mit/src/app.py", "repo_mit/src/latin1.py",
              "repo_mit/src/near_a.py", "repo_mit/src/util.js", "lib/snippet.py", "records.jsonl:2",
              "repo_mit/src/preise.py", "repo_mit/STORY.md", "pkg/kept.py"}
ARGS = ["workers=2", "progress=false", "tokenizer.train=true", "tokenizer.vocab_size=320", "ingest.files_per_shard=8"]


def available_stages():
    """The stages the default config enables."""
    from data_pipeline.pipeline import build_stages
    from data_pipeline.cli import compose_config

    cfg = compose_config(["input=.", "output=unused"])
    return {stage.name for _, stage in build_stages(cfg)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    corpus = root / "corpus"
    expected_drops = build_corpus(corpus, available_stages())
    write_jsonl(root / "records.jsonl")
    write_parquet(root / "stack.parquet")
    out = root / "out"
    assert main([f"input=[{corpus},{root / 'records.jsonl'},{root / 'stack.parquet'}]", f"output={out}", *ARGS]) == 0
    expected_drops.update({"records.jsonl:3": ("ingest", "corrupt:jsonl"), "records.jsonl:4": ("ingest", "missing_text"),
                           "pkg/gpl.py": ("license", "not_permissive:GPL-2.0")})
    survivors = {p for p in CANDIDATES if p not in expected_drops}
    return out, expected_drops, survivors


def test_survivors_and_drop_reasons(run):
    out, expected_drops, survivors = run
    kept = pq.read_table(str(out / "documents")).to_pylist()
    dropped = pq.read_table(str(out / "dropped")).to_pylist()
    assert {r["path"] for r in kept} == survivors
    got = {}
    for r in dropped:
        reason = next((p for p in ("near_duplicate", "off_topic") if r["reason"].startswith(p)), r["reason"])
        got[r["path"]] = (r["stage"], reason)
    assert got == expected_drops
    near = next(r for r in dropped if r["stage"] == "near_dedup")
    assert near["reason"] == "near_duplicate_of:corpus/repo_mit/src/near_a.py"
    by_path = {r["path"]: r for r in kept}
    assert by_path["repo_mit/src/latin1.py"]["license"] == "MIT"
    assert (by_path["repo_mit/run_tool"]["kind"], by_path["repo_mit/run_tool"]["lang"]) == ("code", "python")
    assert by_path["records.jsonl:2"]["kind"] == "text"
    assert json.loads(by_path["repo_mit/src/latin1.py"]["meta"])["encoding"] == "cp1252"


def test_stats_cover_every_stage_and_document(run):
    out, expected_drops, survivors = run
    stats = json.loads((out / "stats.json").read_text())
    names = [s["stage"] for s in stats["stages"]]
    assert names[:3] == ["ingest", "license", "quality"] and names[-3:] == ["decontam", "exact_dedup", "near_dedup"]
    assert stats["input"]["documents"] == len(survivors) + len(expected_drops)
    assert stats["output"]["documents"] == len(survivors)
    assert stats["dropped_total"] == len(expected_drops)
    for earlier, later in zip(stats["stages"], stats["stages"][1:]):
        assert later["docs_in"] == earlier["kept"]
    ingest = stats["stages"][0]
    assert ingest["dropped"]["binary"] == 2 and len(ingest["examples"]["binary"]) == 2
    near = stats["duplicate_clusters"]
    assert near == stats["stages"][-1]["extra"]["duplicate_clusters"]
    assert near["clusters"] == 1 and near["duplicates_removed"] == 1


def test_token_shards_from_a_trained_tokenizer(run):
    out, _, survivors = run
    manifest = read_manifest(out / "shards")
    assert manifest.counts["train"]["documents"] == len(survivors)
    assert (out / "tokenizer" / "tokenizer.json").exists()
    assert json.loads((out / "stats.json").read_text())["shards"]["counts"]["train"]["documents"] == len(survivors)


def test_rerun_skips_everything_and_keeps_the_output(run, capsys):
    out, _, _ = run
    before = (out / "stats.json").read_text()
    inputs = json.loads((out / "pipeline_config.json").read_text())["input"]
    assert main([f"input=[{','.join(inputs)}]", f"output={out}", *ARGS]) == 0
    err = capsys.readouterr().err
    assert err.count("complete, skipped") >= 7
    assert json.loads((out / "stats.json").read_text())["stages"] == json.loads(before)["stages"]


def test_resuming_with_another_config_is_refused(run, capsys):
    out, _, _ = run
    inputs = json.loads((out / "pipeline_config.json").read_text())["input"]
    assert main([f"input=[{','.join(inputs)}]", f"output={out}", *ARGS, "quality.code.max_line_length=50"]) == 2
    assert "differs in: quality" in capsys.readouterr().err


def test_wrong_key_and_missing_input_stop_before_any_work(tmp_path, capsys):
    assert main([f"input={tmp_path}", f"output={tmp_path / 'o1'}", "licence.allow_unknown=true"]) == 2
    assert "licence" in capsys.readouterr().err
    assert main([f"input={tmp_path / 'nope'}", f"output={tmp_path / 'o2'}"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main([f"input={tmp_path}", f"output={tmp_path / 'o3'}", "stage=qualty"]) == 2
    assert "qualty" in capsys.readouterr().err
    assert main([f"input={tmp_path}", f"output={tmp_path / 'o5'}", "+license.alow_unknown=true"]) == 2
    assert "alow_unknown" in capsys.readouterr().err
    if "topic" in available_stages():
        assert main([f"input={tmp_path}", f"output={tmp_path / 'o6'}", "+topic.treshold=0.3"]) == 2
        assert "treshold" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="input="):
        main([f"output={tmp_path / 'o4'}"])
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3", "o5", "o6"))


@pytest.mark.parametrize("option, said", [
    ("workers=abc", "workers='abc': expected an integer >= 1"), ("workers=0", "workers=0: expected an integer >= 1"),
    ("workers=1.5", "workers=1.5"), ("task=a", "task='a': expected an integer >= 0"),
    ("near_dedup.bucket_partitions=abc", "near_dedup.bucket_partitions: expected an integer, got 'abc'"),
    ("near_dedup.threshold=true", "near_dedup.threshold: expected a number, got True"),
    ("near_dedup.batch_size=0", "near_dedup.batch_size must be >= 1"),
    ("quality.code.max_line_length=x", "quality.code.max_line_length: expected an integer or null, got 'x'"),
    ("english.languages=en", "english.languages: expected a list, got 'en'"),
    ("ingest.files_per_shard=0", "ingest.files_per_shard must be >= 1"),
])
def test_a_bad_value_stops_before_any_work_naming_key_and_value(tmp_path, capsys, option, said):
    out = tmp_path / "out"
    assert main([f"input={tmp_path}", f"output={out}", "n_tasks=2" if option.startswith("task") else "progress=false",
                 option]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert not (out / "stages").exists()


def test_output_that_is_a_file_and_task_from_the_environment(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main([f"input={tmp_path}", f"output={tmp_path / 'taken'}"]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.py").write_text("x = 1\n")
    # `task=${oc.env:...}` gives a string of digits: accepted as the number
    assert main([f"input={tmp_path / 'in'}", f"output={tmp_path / 'o'}", "progress=false", "stage=ingest",
                 "task='0'", "n_tasks='1'"]) == 0


def test_console_script_with_a_tokenizer_path(run, tmp_path):
    """The installed command, as docs/pipeline.md shows it: a JSONL file and an existing tokenizer."""
    out, _, _ = run
    jsonl = Path(json.loads((out / "pipeline_config.json").read_text())["input"][1])
    result = subprocess.run(["refact-pipeline", f"input={jsonl}", f"output={tmp_path / 'out'}",
                             f"tokenizer={out / 'tokenizer'}", "holdout.fraction=0.5", "progress=false"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "4 documents in, 2 kept" in result.stdout, result.stdout
    manifest = read_manifest(tmp_path / "out" / "shards")
    assert manifest.counts["train"]["documents"] + manifest.counts["valid"]["documents"] == 2
    assert (tmp_path / "out" / "heldout").is_dir()


def rows(directory: Path) -> list[tuple]:
    return sorted(tuple(sorted(r.items())) for r in pq.read_table(str(directory)).to_pylist())


def test_one_stage_as_slurm_array_tasks(run, tmp_path, capsys):
    """`stage=NAME task=i n_tasks=N`: each task does its share; together they equal the local run's stage."""
    out, _, _ = run
    inputs = json.loads((out / "pipeline_config.json").read_text())["input"]
    arr = tmp_path / "array"
    args = [f"input=[{','.join(inputs)}]", f"output={arr}", "workers=1", "progress=false",
            "ingest.files_per_shard=8"]
    assert main([*args, "stage=license", "task=0", "n_tasks=2"]) == 2
    assert "needs stage 'ingest' complete first" in capsys.readouterr().err
    for stage in ("ingest", "license"):
        for task in (0, 1):
            assert main([*args, f"stage={stage}", f"task={task}", "n_tasks=2"]) == 0
    for sub in ("00_ingest", "01_license"):
        assert (arr / "stages" / sub / "_SUCCESS").exists()
    assert rows(arr / "stages" / "00_ingest" / "documents") == rows(out / "stages" / "00_ingest" / "documents")
    # stage=license alone keeps what the local run's streamed pass let through its licence filter
    dropped = {r["id"] for r in pq.read_table(str(out / "dropped")).to_pylist() if r["stage"] == "license"}
    ingested = pq.read_table(str(out / "stages" / "00_ingest" / "documents")).to_pylist()
    assert rows(arr / "stages" / "01_license" / "documents") == sorted(
        tuple(sorted(r.items())) for r in ingested if r["id"] not in dropped)
    assert rows(arr / "dropped") == sorted(tuple(sorted(r.items())) for r in pq.read_table(str(out / "dropped"))
                                           .to_pylist() if r["stage"] in ("ingest", "license"))
    assert not (arr / "stats.json").exists()  # later stages have not run


def test_unknown_licence_allowed_for_one_source(run, tmp_path):
    """docs/pipeline.md: `license.allow_unknown_sources=[NAME]` keeps that source's unlicensed code."""
    out, _, _ = run
    inputs = json.loads((out / "pipeline_config.json").read_text())["input"]
    args = [f"input=[{','.join(inputs)}]", f"output={tmp_path / 'o'}", "workers=1", "progress=false",
            "license.allow_unknown_sources=[corpus]"]
    assert main([*args, "stage=ingest"]) == 0 and main([*args, "stage=license"]) == 0
    kept = {r["path"] for r in pq.read_table(str(tmp_path / "o" / "stages" / "01_license" / "documents")).to_pylist()}
    assert "repo_none/tool.py" in kept and "repo_gpl/main.py" not in kept


def test_without_intermediate_files_the_output_is_the_same(run, tmp_path):
    out, _, _ = run
    inputs = json.loads((out / "pipeline_config.json").read_text())["input"]
    lean = tmp_path / "lean"
    args = [f"input=[{','.join(inputs)}]", f"output={lean}", "workers=1", "progress=false",
            "ingest.files_per_shard=8", "keep_intermediate=false"]
    assert main(args) == 0
    stage_dirs = sorted((lean / "stages").iterdir())
    assert [d.name for d in stage_dirs if (d / "documents").exists()] == [stage_dirs[-1].name]
    assert not any((d / "scratch").exists() for d in stage_dirs)
    assert rows(lean / "documents") == rows(out / "documents")
    assert rows(lean / "dropped") == rows(out / "dropped")
    assert main(args) == 0  # a rerun skips every stage although their inputs are gone


def test_data_that_cannot_give_what_the_config_asks_is_one_line(tmp_path, capsys):
    # a tokenizer to train on no kept document, a mixture that leaves no train token: a RuntimeError traceback from
    # the executor, exit 1, before
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.py").write_text("x")  # dropped by the quality filter: no document is kept
    assert main([f"input={tmp_path / 'in'}", f"output={tmp_path / 'o'}", "progress=false", "tokenizer.train=true"]) == 2
    assert "no document was kept to train the tokenizer on" in capsys.readouterr().err
    assert main([f"input={tmp_path / 'in'}", f"output={tmp_path / 'o2'}", "progress=false", "license.allow_unknown=true",
                 "quality.enabled=false", "tokenizer.train=true", "+mixture.weights={code: 0}"]) == 2
    assert "gives weight 0 to every group of the data" in capsys.readouterr().err


def test_the_same_output_by_another_spelling_resumes_and_a_broken_snapshot_is_one_line(tmp_path, capsys, monkeypatch):
    # output=o then output=/abs/o (or o/) and input=in then /abs/in were refused as "a different config"; a truncated
    # pipeline_config.json was a JSONDecodeError traceback
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.py").write_text("def f(x):\n    return x + 1\n")
    monkeypatch.chdir(tmp_path)
    args = ["progress=false", "workers=1", "license.allow_unknown=true"]
    assert main(["input=in", "output=o", *args]) == 0
    for spelling in (["input=in", f"output={tmp_path / 'o'}"], [f"input={tmp_path / 'in'}", "output=o/"]):
        assert main([*spelling, *args]) == 0
        assert "complete, skipped" in capsys.readouterr().err
    snapshot = tmp_path / "o" / "pipeline_config.json"
    for broken in (snapshot.read_text()[:20], "[1, 2]"):
        snapshot.write_text(broken)
        assert main(["input=in", "output=o", *args]) == 2
        err = capsys.readouterr().err
        assert f"{snapshot} is not the config refact-pipeline wrote there" in err and "Traceback" not in err
