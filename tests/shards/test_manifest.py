"""Manifest validation: clear errors for the ways a shard directory goes wrong; uint32 shards read back."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from data_pipeline.shards import (Manifest, ManifestError, ShardWriter, TokenizerInfo, open_split, open_split_documents,
                                  read_manifest, write_manifest)
from data_pipeline.tokenization import build_shards


@pytest.fixture()
def built(tmp_path, inputs, tokenizer):
    build_shards(inputs, tmp_path / "out", tokenizer)
    return tmp_path / "out"


def _edit(out, change) -> None:
    path = out / "shards" / "manifest.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def test_reads_from_output_dir_or_shards_dir(built, tokenizer):
    assert read_manifest(built).counts == read_manifest(built / "shards", tokenizer.sha256).counts


def test_missing_shard_file_is_named(built):
    (built / "shards" / "train-00000.bin").unlink()
    with pytest.raises(ManifestError, match="train-00000.bin: missing"):
        read_manifest(built)


def test_truncated_shard_is_reported(built):
    path = built / "shards" / "train-00000.bin"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ManifestError, match="truncated"):
        open_split(built, "train")


def test_wrong_dtype_is_reported(built):
    _edit(built, lambda raw: raw.update(dtype="uint32"))
    with pytest.raises(ManifestError, match="wrong dtype"):
        read_manifest(built)
    _edit(built, lambda raw: raw.update(dtype="int8"))
    with pytest.raises(ManifestError, match="dtype 'int8' is not one of"):
        read_manifest(built)


def test_dtype_too_small_for_the_vocabulary(built):
    _edit(built, lambda raw: raw["tokenizer"].update(vocab_size=70_000))
    with pytest.raises(ManifestError, match="cannot hold the ids of a 70000-entry vocabulary"):
        read_manifest(built)


def test_tokenizer_hash_mismatch(built):
    with pytest.raises(ManifestError, match="tokenizer sha256"):
        read_manifest(built, tokenizer_sha256="0" * 64)


def test_stale_counts_and_bad_index(built):
    _edit(built, lambda raw: raw["counts"]["train"].update(documents=1))
    with pytest.raises(ManifestError, match=r"counts\['train'\]"):
        read_manifest(built)
    _edit(built, lambda raw: raw["counts"]["train"].update(documents=raw["splits"]["train"][0]["documents"]))
    read_manifest(built)
    np.save(built / "shards" / "train-00000.idx.npy", np.array([0, 5], dtype=np.int64))
    with pytest.raises(ManifestError, match=r"train-00000.idx.npy: int64 offsets of shape \(2,\)"):
        read_manifest(built)


def test_wrong_format_and_missing_dir(built, tmp_path):
    _edit(built, lambda raw: raw.update(format="megatron"))
    with pytest.raises(ManifestError, match="format 'megatron'"):
        read_manifest(built)
    with pytest.raises(ManifestError, match="no token shards"):
        read_manifest(tmp_path / "elsewhere")


def test_unknown_split(built):
    with pytest.raises(ManifestError, match="no split 'test'"):
        open_split(built, "test")


def test_uint32_shards_round_trip(tmp_path, built):
    """Vocabularies over 65536 entries write uint32; ids above 65535 survive the writer and the readers."""
    d = tmp_path / "big" / "shards"
    writer = ShardWriter(d, "train", np.uint32, eot_id=0, max_tokens=10)
    docs = [np.array([70_000, 5, 65_536], dtype=np.uint32), np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.uint32),
            np.array([99_999], dtype=np.uint32)]
    for doc in docs:
        writer.add(doc)
    shards = writer.close()
    assert [s.documents for s in shards] == [1, 2]  # 4 + 8 > 10 rolls over (no document straddles two shards)
    shutil.copy(built / "shards" / "tokenizer.json", d / "tokenizer.json")
    write_manifest(Manifest(d, TokenizerInfo("x" * 64, 100_000, 100_032), "uint32", 0, {}, {"train": shards},
                            {"train": {"tokens": 14, "documents": 3}}, {}))
    arrays = open_split(tmp_path / "big", "train")
    assert [a.dtype for a in arrays] == [np.uint32] * 2
    assert np.concatenate(arrays).tolist() == [70_000, 5, 65_536, 0, 1, 2, 3, 4, 5, 6, 7, 0, 99_999, 0]
    (tokens, index) = open_split_documents(tmp_path / "big", "train")[1]
    assert index.tolist() == [0, 8, 10] and tokens[index[1]:index[2]].tolist() == [99_999, 0]


def test_write_shards_packs_pretokenized_documents(tmp_path, tokenizer):
    from data_pipeline.shards import write_shards

    docs = {"train": [tokenizer.encode("def f():\n    return 1\n"), [], tokenizer.encode("x = 2")],
            "valid": [tokenizer.encode("print('ok')")]}
    m = write_shards(tmp_path / "shards", docs, tokenizer, max_tokens_per_shard=8, progress=False)
    assert m.counts["train"]["documents"] == 3 and m.counts["valid"]["documents"] == 1
    flat = np.concatenate(open_split(tmp_path, "train")).tolist()
    assert flat == docs["train"][0] + [0] + [0] + docs["train"][2] + [0]  # an empty document is a lone EOT
    assert read_manifest(tmp_path, tokenizer.sha256).tokenizer.vocab_size == tokenizer.vocab_size


def _offsets(built, change) -> None:
    path = built / "shards" / "train-00000.idx.npy"
    np.save(path, change(np.load(path)))


@pytest.mark.parametrize("change", [
    lambda a: np.concatenate([a[:2], [a[-1] + 500], a[3:]]),  # an offset past the end of the .bin
    lambda a: np.concatenate([a[:2], [-7], a[3:]]),  # a negative offset
    lambda a: np.concatenate([a[:2], [a[1]], a[3:]]),  # two documents at one start: an empty, overlapping one
    lambda a: a.astype(np.float64),  # offsets that are no integers
], ids=["past-end", "negative", "overlapping", "float"])
def test_index_offsets_that_do_not_rise_from_0_to_the_end_are_refused(built, change):
    _offsets(built, change)
    with pytest.raises(ManifestError, match=r"train-00000.idx.npy: .*integers rising from 0 to"):
        read_manifest(built)


def test_an_index_that_is_no_npy_array_is_named(built):
    (built / "shards" / "train-00000.idx.npy").write_bytes(b"not numpy")
    with pytest.raises(ManifestError, match="train-00000.idx.npy: not an array of document offsets"):
        read_manifest(built)
    np.save(built / "shards" / "train-00000.idx.npy", np.array([0, None], dtype=object), allow_pickle=True)
    with pytest.raises(ManifestError, match="train-00000.idx.npy: not an array of document offsets"):
        read_manifest(built)


@pytest.mark.parametrize("change, message", [
    (lambda raw: raw["splits"]["train"][0].update(tokens=float(raw["splits"]["train"][0]["tokens"])),
     r"splits\['train'\]\[0\].tokens = \d+\.0, expected a whole number"),
    (lambda raw: raw["splits"]["train"][0].update(documents=str(raw["splits"]["train"][0]["documents"])),
     r"splits\['train'\]\[0\].documents = '\d+', expected a whole number"),
    (lambda raw: raw["tokenizer"].update(vocab_size="512"), "tokenizer.vocab_size = '512'"),
    (lambda raw: raw.update(eot_id=512), "eot_id 512 is not an id of the 512-entry vocabulary"),
    (lambda raw: raw.update(counts=[]), r"malformed \(AttributeError"),
    (lambda raw: raw["splits"]["train"][0].update(file="../../elsewhere/train-00000.bin"),
     "file name '../../elsewhere/train-00000.bin' is not a plain file name"),
    (lambda raw: raw["tokenizer"].update(file="/etc/passwd"), "file name '/etc/passwd' is not a plain file name"),
], ids=["float-tokens", "string-documents", "string-vocab", "eot-outside-vocab", "counts-list", "file-outside",
                                 "tokenizer-outside"])
def test_manifest_fields_of_the_wrong_type_or_outside_the_directory_are_refused(built, change, message):
    _edit(built, change)
    with pytest.raises(ManifestError, match=message):
        read_manifest(built)


def test_a_manifest_that_is_no_json_object(built):
    (built / "shards" / "manifest.json").write_text("[]")
    with pytest.raises(ManifestError, match="a JSON list, expected an object"):
        read_manifest(built)
