"""The binary files a run writes and a rerun reads back (near and exact dedup scratch: .npy signatures, buckets,
Parquet hashes and removal lists; a stage's documents read by the next stage; the tokenize units' .bin/.npz
scratch; the shards' .idx.npy), left empty, short, zero-filled or replaced by another file of the same name: by a
power cut (XFS and Lustre can leave a renamed, not fsynced, file empty or short), a full disk, a cut copy or a hand
edit. Each unit's completion record holds the size and xxh3 of the files it wrote; the rerun finds the damaged
file, says so in one line naming it, does its unit again and gives the undamaged run's output. Before: a traceback
(numpy's EOFError, pyarrow's ArrowInvalid, an mmap ValueError) or, worse, silently different shards."""
import json
import os
import shutil
from pathlib import Path

import pytest

import data_pipeline.tokenization as tokenization
from data_pipeline.cli import main

from test_damaged_state import ARGS, interrupted_build, reference, without_cpu_seconds  # noqa: F401 (a fixture)

ND, ED = "stages/07_near_dedup", "stages/06_exact_dedup"


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how.startswith("as "):  # another file of the same directory under this name (another shard's, a copy)
        shutil.copyfile(path.parent / how[3:], path)
        return
    path.write_bytes({"empty": b"", "half": data[: len(data) // 2], "8 bytes short": data[:-8],
                      "zero-filled": bytes(len(data)), "one bit flipped": data[:-9] + bytes([data[-9] ^ 1]) + data[-8:]
                      }[how])


def copy_output(reference: Path, out: Path) -> None:
    """A copy of the reference output in which DIR/documents/ are hard links of the last stage's documents, as
    publishing makes them (a damaged published shard is a damaged stage output)."""
    shutil.copytree(reference / "ref", out)
    for published in (out / "documents").iterdir():
        published.unlink()
        os.link(out / ND / "documents" / published.name, published)


def rerun(reference: Path, out: Path, capsys, damaged: str, how: str, remove: tuple[str, ...]) -> tuple[int, str]:
    copy_output(reference, out)
    for pattern in remove:  # what a crash leaves unwritten: the stage's _SUCCESS, the markers of the later steps
        for path in out.glob(pattern):
            path.unlink()
    damage(out / damaged, how)
    capsys.readouterr()
    rc = main([f"input={reference / 'corpus'}", f"output={out}", *ARGS])
    return rc, capsys.readouterr().err


def assert_as_undamaged(reference: Path, out: Path) -> None:
    for part in ("documents", "dropped", "shards"):
        for ref_file in (reference / "ref" / part).iterdir():
            assert (out / part / ref_file.name).read_bytes() == ref_file.read_bytes(), ref_file
    assert (without_cpu_seconds(json.loads((out / "stats.json").read_text()))
            == without_cpu_seconds(json.loads((reference / "ref" / "stats.json").read_text())))


LATER_STEPS = {"signatures": ("buckets", "clusters", "filter"), "buckets": ("clusters", "filter"),
               "clusters": ("filter",), "hash": ("resolve", "filter"), "resolve": ("filter",)}


@pytest.mark.parametrize("damaged, how", [
    (f"{ND}/scratch/signatures/00000.sig.npy", "empty"),  # was: EOFError: No data left in file
    (f"{ND}/scratch/signatures/00000.sig.npy", "zero-filled"),  # was: ValueError: ... pickled (object) data
    (f"{ND}/scratch/signatures/00001.sig.npy", "as 00002.sig.npy"),  # was: ValueError: 1 signatures for 0 rows
    (f"{ND}/scratch/signatures/00000.meta.parquet", "half"),  # was: ArrowInvalid: Parquet magic bytes not found
    (f"{ND}/scratch/buckets/b000-p000.npy", "8 bytes short"),  # was: ValueError: Failed to read all data
    (f"{ND}/scratch/buckets/b000-p000.npy", "one bit flipped"),  # an edge to another document: silently
    (f"{ND}/scratch/clusters/00000.parquet", "empty"),  # was: ArrowInvalid: Parquet file size is 0 bytes
    (f"{ED}/scratch/hash/0000/00000.parquet", "half"),  # was: ArrowInvalid
    (f"{ED}/scratch/resolve/0000.parquet", "empty"),  # was: ArrowInvalid
])
def test_damaged_dedup_scratch_of_a_finished_unit_is_made_again(reference, tmp_path, capsys, damaged, how):
    """A power cut while the stage ran: the unit that wrote the file is done, the later steps are not."""
    stage, step = damaged.split("/")[1], damaged.split("/")[3]
    remove = (f"stages/{stage}/_SUCCESS", *(f"stages/{stage}/markers/{later}/*" for later in LATER_STEPS[step]))
    rc, err = rerun(reference, tmp_path / "out", capsys, damaged, how, remove)
    assert rc == 0, err
    assert "Traceback" not in err
    assert f"{tmp_path / 'out' / damaged} is damaged" in err and f"of step {step!r} again" in err
    assert_as_undamaged(reference, tmp_path / "out")


@pytest.mark.parametrize("damaged, how, unfinished", [
    # a document of a finished stage, the next stage not finished: was a traceback in the next stage (ArrowInvalid)
    (f"{ED}/documents/part-00000.parquet", "half", "07_near_dedup"),
    ("stages/05_decontam/documents/part-00003.parquet", "empty", "06_exact_dedup"),  # the output of a streamed chain
    ("documents/part-00002.parquet", "half", "08_tokenize"),  # published: a hard link of near_dedup's
    # a document of a finished unit of an unfinished stage: was published as it was (exit 0, a cut shard)
    (f"{ND}/documents/part-00002.parquet", "half", "07_near_dedup"),
])
def test_a_damaged_document_shard_is_made_again_before_it_is_read(reference, tmp_path, capsys, damaged, how,
                                                                    unfinished):
    markers = "markers/*/*" if damaged.startswith(ED) or "decontam" in damaged or damaged.startswith("doc") else \
        "markers/filter/00001.done"
    rc, err = rerun(reference, tmp_path / "out", capsys, damaged, how,
                    (f"stages/{unfinished}/_SUCCESS", f"stages/{unfinished}/{markers}"))
    assert rc == 0, err
    assert_as_undamaged(reference, tmp_path / "out")
    shown = ND + "/documents/part-00002.parquet" if damaged.startswith("documents") else damaged
    assert f"{tmp_path / 'out' / shown} is damaged" in err and "of step 'filter' again" in err


@pytest.mark.parametrize("damaged, how", [
    ("bin", "empty"), ("bin", "8 bytes short"),  # was: ValueError: mmap length is greater than file size
    ("npz", "empty"),  # was: EOFError: No data left in file
    ("npz", "8 bytes short"),  # was: BadZipFile: File is not a zip file
    ("bin", "one bit flipped"),  # was: exit 0, train-00000.bin with one token off
    ("npz", "as unit-00000.npz"),  # another unit's lengths: was exit 0, other documents in every shard file
])
def test_damaged_tokenize_scratch_of_an_interrupted_build_is_tokenized_again(reference, tmp_path, monkeypatch,
                                                                             capsys, damaged, how):
    """A build killed after pass 1 keeps each unit's .bin (tokens) and .npz (document lengths, hashes) for the
    rerun; its completion record said done whatever state they were in."""
    documents, tok = interrupted_build(reference, tmp_path, monkeypatch)
    work = tmp_path / "out" / "shards.work"
    unit = max(work.glob("unit-*.bin"), key=lambda f: f.stat().st_size).stem  # one with documents
    damage(work / f"{unit}.{damaged}", how)
    capsys.readouterr()
    tokenization.build_shards(documents, tmp_path / "out", tok, progress=False)
    for ref_file in (tmp_path / "clean" / "shards").iterdir():
        assert (tmp_path / "out" / "shards" / ref_file.name).read_bytes() == ref_file.read_bytes(), ref_file
    assert f"{work / unit}.{damaged} is damaged" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["empty", "8 bytes short", "zero-filled"])
def test_a_damaged_shard_index_is_built_again(reference, tmp_path, capsys, how):
    """Was: exit 0, the stage counted as complete, and the trainer's documents reader refused the index later."""
    rc, err = rerun(reference, tmp_path / "out", capsys, "shards/train-00000.idx.npy", how, ())
    assert rc == 0, err
    assert f"{tmp_path / 'out' / 'shards' / 'train-00000.idx.npy'}: not an array of document offsets" in err
    assert "building the shards again" in err
    assert_as_undamaged(reference, tmp_path / "out")
