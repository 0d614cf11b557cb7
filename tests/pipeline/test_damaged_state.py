"""The files a finished or interrupted run leaves and a rerun reads back (stage stats.json, unit stats, the near-dedup
report, tokenize.json, the manifest, the trained tokenizer), left empty, cut short, not JSON or of the wrong shape by
a crash, a full disk, a power cut (XFS and Lustre can leave a renamed file empty), a cut copy or a hand edit. They are
derived data: the rerun makes them again, says so in one line naming the file, and gives the undamaged run's output;
what cannot be made again is one line and exit 2, never a traceback."""
import json
import shutil
from pathlib import Path

import pytest

from data_pipeline.cli import main

from pipeline_corpus import build_corpus

ARGS = ["progress=false", "workers=1", "ingest.files_per_shard=2", "exact_dedup.buckets=4", "tokenizer.train=true",
        "tokenizer.vocab_size=320"]


def interrupted_build(reference: Path, tmp_path: Path, monkeypatch):
    """(documents, tokenizer) of the reference run, built into tmp_path/clean whole and into tmp_path/out killed
    after pass 1: its scratch (shards.work/) is left for a rerun."""
    import data_pipeline.tokenization as tokenization
    from data_pipeline.tokenizer import load_tokenizer

    documents = sorted((reference / "ref" / "documents").glob("part-*.parquet"))
    tok = load_tokenizer(reference / "ref" / "tokenizer")
    tokenization.build_shards(documents, tmp_path / "clean", tok, progress=False)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(tokenization, "write_shards", killed)
        with pytest.raises(KeyboardInterrupt):
            tokenization.build_shards(documents, tmp_path / "out", tok, progress=False)
    return documents, tok


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("damaged")
    build_corpus(base / "corpus", set())
    assert main([f"input={base / 'corpus'}", f"output={base / 'ref'}", *ARGS]) == 0
    return base


def damage(path: Path, how: str) -> None:
    text = path.read_text()
    if how == "truncated":
        path.write_text(text[: len(text) // 2])
    elif how == "a string count":  # the first counter of a stats file, as a string
        path.write_text(json.dumps({**json.loads(text), "kept": str(json.loads(text)["kept"])}))
    else:
        path.write_text({"empty": "", "a list": "[1, 2]", "no keys": "{}"}[how])


def rerun(reference: Path, tmp_path: Path, capsys, damaged: str, how: str, remove: tuple[str, ...] = (),
          extra: tuple[str, ...] = ()) -> tuple[int, Path, str]:
    """A copy of the reference output with `damaged` damaged (and `remove` removed: the markers a crash leaves
    unwritten), run again with the same command: (exit code, the output, stderr)."""
    out = tmp_path / "out"
    shutil.copytree(reference / "ref", out)
    for rel in remove:
        (out / rel).unlink()
    damage(out / damaged, how)
    capsys.readouterr()
    rc = main([f"input={reference / 'corpus'}", f"output={out}", *ARGS, *extra])
    return rc, out, capsys.readouterr().err


def without_cpu_seconds(stats: dict) -> dict:
    """DIR/stats.json less the CPU seconds, which a unit done again measures anew."""
    for stage in stats["stages"]:
        stage["extra"].pop("cpu_seconds", None)
    return stats


@pytest.mark.parametrize("damaged, how", [
    ("stages/03_english/stats.json", "empty"),
    ("stages/00_ingest/stats.json", "truncated"),
    ("stages/07_near_dedup/stats.json", "a list"),
    ("stages/06_exact_dedup/stats.json", "no keys"),
    ("stages/01_license/stats.json", "a string count"),
])
def test_a_damaged_stage_stats_json_is_summed_again_from_its_units(reference, tmp_path, capsys, damaged, how):
    """Was: json.JSONDecodeError / KeyError / TypeError tracebacks, or a string summed into DIR/stats.json."""
    rc, out, err = rerun(reference, tmp_path, capsys, damaged, how)
    assert rc == 0, err
    assert "Traceback" not in err
    assert f"{out / damaged} is damaged" in err and "summed again from its units' stats" in err
    assert json.loads((out / damaged).read_text()) == json.loads((reference / "ref" / damaged).read_text())
    assert json.loads((out / "stats.json").read_text()) == json.loads((reference / "ref" / "stats.json").read_text())


@pytest.mark.parametrize("damaged, how, remove", [
    # a power cut after a unit's stats were renamed into place, before the stage finished
    ("stages/03_english/stats/filter/00002.json", "empty", "stages/05_decontam/_SUCCESS"),  # a streamed chain
    ("stages/00_ingest/stats/read/00001.json", "truncated", "stages/00_ingest/_SUCCESS"),
    ("stages/07_near_dedup/stats/signatures/00000.json", "a string count", "stages/07_near_dedup/_SUCCESS"),
    ("stages/07_near_dedup/scratch/clusters/report.json", "empty", "stages/07_near_dedup/_SUCCESS"),
])
def test_a_unit_whose_files_are_damaged_is_done_again(reference, tmp_path, capsys, damaged, how, remove):
    """Was: a traceback when the stage summed its units' stats (or read the clusters report)."""
    rc, out, err = rerun(reference, tmp_path, capsys, damaged, how, (remove,))
    assert rc == 0, err
    assert "Traceback" not in err
    assert f"{out / damaged} is damaged" in err and "doing 1 unit(s) again" in err
    assert (without_cpu_seconds(json.loads((out / "stats.json").read_text()))
            == without_cpu_seconds(json.loads((reference / "ref" / "stats.json").read_text())))
    for part in ("documents", "dropped", "shards"):
        for ref_file in (reference / "ref" / part).iterdir():
            assert (out / part / ref_file.name).read_bytes() == ref_file.read_bytes(), ref_file


def test_stage_stats_that_cannot_be_summed_again_are_one_line(reference, tmp_path, capsys):
    """The stage's stats.json and one of its units' stats both damaged (the stage is finished: its inputs may be
    gone): exit 2 naming the file and the fix."""
    unit = tmp_path / "out" / "stages" / "03_english" / "stats" / "filter" / "00000.json"
    shutil.copytree(reference / "ref", tmp_path / "out")
    unit.write_text("")
    shutil.rmtree(tmp_path / "out" / "stages" / "03_english" / "markers")  # not read: the stage is finished
    (tmp_path / "out" / "stages" / "03_english" / "stats.json").write_text("{")
    capsys.readouterr()
    assert main([f"input={reference / 'corpus'}", f"output={tmp_path / 'out'}", *ARGS]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{tmp_path / 'out' / 'stages' / '03_english' / 'stats.json'} is damaged: not JSON" in err
    assert f"delete {tmp_path / 'out' / 'stages' / '03_english'} and rerun" in err


@pytest.mark.parametrize("damaged, how", [
    ("tokenize.json", "empty"), ("tokenize.json", "a list"), ("shards/manifest.json", "empty"),
    ("shards/manifest.json", "a list"), ("tokenizer/tokenizer.json", "truncated"),
])
def test_a_damaged_tokenization_record_manifest_or_trained_tokenizer_is_built_again(reference, tmp_path, capsys,
                                                                                     damaged, how):
    """Was: a traceback (tokenize.json, the tokenizer), or exit 0 with the damaged manifest left in place (the
    stage counted as complete while the trainer refuses the shards)."""
    rc, out, err = rerun(reference, tmp_path, capsys, damaged, how)
    assert rc == 0, err
    assert "Traceback" not in err
    assert str(out / damaged) in err and "again" in err
    for part in ("shards", "tokenizer"):
        for ref_file in (reference / "ref" / part).iterdir():
            assert (out / part / ref_file.name).read_bytes() == ref_file.read_bytes(), ref_file
    assert json.loads((out / "tokenize.json").read_text()) == json.loads((reference / "ref" / "tokenize.json").read_text())


@pytest.mark.parametrize("damaged", ["settings.json", "unit-00000.json"])
def test_an_interrupted_tokenization_with_a_damaged_scratch_record_tokenizes_again(reference, tmp_path, monkeypatch,
                                                                                   capsys, damaged):
    """A build killed after pass 1 keeps its scratch (shards.work/) for the rerun; its settings record or a unit's
    completion record left empty was a json.JSONDecodeError traceback: now the unit (or every unit) is redone."""
    import data_pipeline.tokenization as tokenization

    documents, tok = interrupted_build(reference, tmp_path, monkeypatch)
    assert (tmp_path / "out" / "shards.work" / damaged).is_file()
    (tmp_path / "out" / "shards.work" / damaged).write_text("")
    capsys.readouterr()
    tokenization.build_shards(documents, tmp_path / "out", tok, progress=False)
    assert f"{tmp_path / 'out' / 'shards.work' / damaged} is damaged: empty" in capsys.readouterr().err
    for ref_file in (tmp_path / "clean" / "shards").iterdir():
        assert (tmp_path / "out" / "shards" / ref_file.name).read_bytes() == ref_file.read_bytes(), ref_file


@pytest.mark.parametrize("damaged, how", [("index.json", "empty"), ("00003.json", "truncated")])
def test_a_damaged_ingest_plan_is_made_again(reference, tmp_path, capsys, damaged, how):
    """The ingest plan (scratch/plan/index.json, one item per read unit), read by a rerun of an unfinished ingest:
    was a json.JSONDecodeError traceback; now the plan is made again and the output is the undamaged run's."""
    rc, out, err = rerun(reference, tmp_path, capsys, f"stages/00_ingest/scratch/plan/{damaged}", how,
                         ("stages/00_ingest/_SUCCESS", "stages/00_ingest/markers/read/00003.done"))
    assert rc == 0, err
    assert "Traceback" not in err
    assert f"{out / 'stages/00_ingest/scratch/plan' / damaged} is damaged" in err and "planning again" in err
    assert (without_cpu_seconds(json.loads((out / "stats.json").read_text()))
            == without_cpu_seconds(json.loads((reference / "ref" / "stats.json").read_text())))
    for ref_file in (reference / "ref" / "shards").iterdir():
        assert (out / "shards" / ref_file.name).read_bytes() == ref_file.read_bytes(), ref_file
