"""build_shards: exact document round trip, holdout, mixture counts, shard rolling, worker-count independence."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from data_pipeline.records import read_documents
from data_pipeline.mixing import HoldoutConfig, MixtureConfig
from data_pipeline.shards import ShardConfig, open_split, open_split_documents, read_manifest
from data_pipeline.tokenization import build_shards
from data_pipeline.tokenizer import load_tokenizer


def _decoded(out, split, tokenizer) -> list[str]:
    texts = []
    for tokens, index in open_split_documents(out, split):
        for a, b in zip(index[:-1], index[1:]):
            assert tokens[b - 1] == tokenizer.eot_id  # each document ends with exactly one EOT
            texts.append(tokenizer.decode(tokens[a:b - 1].tolist()))
    return texts


def test_round_trip_holdout_and_counts(tmp_path, inputs, documents, tokenizer):
    out = tmp_path / "out"
    m = build_shards(inputs, out, tokenizer, MixtureConfig(), HoldoutConfig(fraction=0.25, seed=3), workers=1,
                     shard_cfg=ShardConfig(max_tokens_per_shard=2000))
    heldout = [d for f in sorted((out / "heldout").glob("*.parquet")) for d in read_documents(f)]
    held_ids = {d.id for d in heldout}
    assert 0 < len(heldout) < len(documents)
    # train: every other document exactly once (weights 1), in shuffled order; valid: the held-out ones
    train = _decoded(out, "train", tokenizer)
    assert Counter(train) == Counter(d.text for d in documents if d.id not in held_ids)
    assert _decoded(out, "valid", tokenizer) == [d.text for d in heldout]
    assert train != [d.text for d in documents if d.id not in held_ids]  # shuffled
    # manifest: counts, files, tokenizer copy
    assert m.dtype == "uint16" and m.eot_id == 0 and len(m.splits["train"]) > 1
    for split in ("train", "valid"):
        arrays = open_split(out, split)
        assert sum(len(a) for a in arrays) == m.counts[split]["tokens"]
        assert all(a.dtype == np.uint16 for a in arrays)
    assert m.counts["train"]["documents"] + m.counts["valid"]["documents"] == len(documents)
    assert m.extra["documents_in"] == len(documents) and m.extra["holdout"]["documents"] == len(heldout)
    assert m.mixture["tokens_before"] == m.mixture["tokens_after"]
    assert sum(m.mixture["tokens_after"].values()) == m.counts["train"]["tokens"]
    assert load_tokenizer(out / "shards").sha256 == tokenizer.sha256 == m.tokenizer.sha256
    raw = json.loads((out / "shards" / "manifest.json").read_text())
    assert raw["format"] == "refact-shards/1" and set(raw["splits"]) == {"train", "valid"}
    assert not (out / "shards.tmp").exists() and not (out / "shards.work").exists()


def test_mixture_weights_repeat_and_subsample(tmp_path, inputs, documents, tokenizer):
    out = tmp_path / "out"
    m = build_shards(inputs, out, tokenizer, MixtureConfig(weights={"code": 2.0, "text": 0.5}, seed=1))
    train = Counter(_decoded(out, "train", tokenizer))
    for d in documents:
        if d.kind == "code":
            assert train[d.text] == 2
        else:
            assert train[d.text] in (0, 1)
    assert m.mixture["tokens_after"]["code"] == 2 * m.mixture["tokens_before"]["code"]
    assert m.mixture["tokens_after"]["text"] < m.mixture["tokens_before"]["text"]
    assert m.mixture["weights"] == {"code": 2.0, "text": 0.5}
    # deterministic: the same inputs and seeds give the same bytes
    again = tmp_path / "again"
    build_shards(inputs, again, tokenizer, MixtureConfig(weights={"code": 2.0, "text": 0.5}, seed=1))
    for s in m.splits["train"]:
        assert (out / "shards" / s.file).read_bytes() == (again / "shards" / s.file).read_bytes()


def test_shares_balance_text_and_code(tmp_path, inputs, tokenizer):
    m = build_shards(inputs, tmp_path / "out", tokenizer, MixtureConfig(shares={"code": 0.5, "text": 0.5}))
    before, after, w = m.mixture["tokens_before"], m.mixture["tokens_after"], m.mixture["weights"]
    assert w["code"] * before["code"] == pytest.approx(w["text"] * before["text"])
    assert w["text"] > 1 > w["code"]  # the corpus is code-heavy: text repeats, code is subsampled
    share = after["text"] / (after["text"] + after["code"])
    assert 0.3 < share < 0.7  # whole documents on a 30-document corpus: coarse, but balanced


def test_holdout_cap_and_kinds(tmp_path, inputs, tokenizer):
    m = build_shards(inputs, tmp_path / "out", tokenizer,
                     holdout_cfg=HoldoutConfig(fraction=1.0, max_documents=4, kinds=("code",)))
    held = [d for f in (tmp_path / "out" / "heldout").glob("*.parquet") for d in read_documents(f)]
    assert len(held) == 4 and {d.kind for d in held} == {"code"}
    assert m.counts["valid"]["documents"] == 4
    with pytest.raises(ValueError, match=r"holdout.kinds must name code and/or text, got \['txt'\]"):
        HoldoutConfig(fraction=0.1, kinds=("txt",))  # held out nothing, without a word, before


def test_no_holdout_gives_an_empty_valid_split(tmp_path, inputs, tokenizer):
    m = build_shards(inputs, tmp_path / "out", tokenizer)
    assert m.splits["valid"] == [] and m.counts["valid"] == {"tokens": 0, "documents": 0}
    assert open_split(tmp_path / "out", "valid") == []
    assert not (tmp_path / "out" / "heldout").exists()


def test_rebuild_replaces_the_previous_shards(tmp_path, inputs, tokenizer):
    out = tmp_path / "out"
    build_shards(inputs, out, tokenizer, shard_cfg=ShardConfig(max_tokens_per_shard=500))
    m = build_shards(inputs[:1], out, tokenizer)
    assert sorted(p.name for p in (out / "shards").glob("*.bin")) == ["train-00000.bin"]
    assert read_manifest(out).counts == m.counts


def test_missing_input_is_named(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        build_shards([tmp_path / "nope.parquet"], tmp_path / "out", tokenizer)


def test_an_input_listed_twice_is_refused(tmp_path, inputs, tokenizer):
    """The same file twice (or under another path) doubled its documents behind the mixture weights."""
    again = inputs[0].parent / ".." / inputs[0].parent.name / inputs[0].name
    with pytest.raises(ValueError, match=f"{inputs[0].name} is also given as .*list each file once"):
        build_shards([inputs[0], inputs[1], again], tmp_path / "out", tokenizer)
    with pytest.raises(ValueError, match="is also given as"):
        build_shards([inputs[1], inputs[1]], tmp_path / "out", tokenizer)
    assert not (tmp_path / "out" / "shards").exists()


@pytest.mark.slow
def test_worker_processes_give_the_same_shards(tmp_path, inputs, tokenizer):
    cfg = MixtureConfig(weights={"code": 1.5}, seed=4)
    one = build_shards(inputs, tmp_path / "one", tokenizer, cfg, HoldoutConfig(fraction=0.2), workers=1)
    two = build_shards(inputs, tmp_path / "two", tokenizer, cfg, HoldoutConfig(fraction=0.2), workers=2)
    assert one.counts == two.counts and one.mixture == two.mixture
    for split in ("train", "valid"):
        for s in one.splits[split]:
            assert (tmp_path / "one" / "shards" / s.file).read_bytes() == (tmp_path / "two" / "shards" / s.file).read_bytes()


def test_interrupted_build_reuses_finished_units(tmp_path, inputs, tokenizer, monkeypatch):
    import data_pipeline.tokenization as shards

    cfg = (MixtureConfig(weights={"text": 2.0}, seed=2), HoldoutConfig(fraction=0.2))
    fresh = build_shards(inputs, tmp_path / "fresh", tokenizer, *cfg)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed after pass 1")

    monkeypatch.setattr(shards, "_load_units", killed)
    with pytest.raises(KeyboardInterrupt):
        build_shards(inputs, tmp_path / "out", tokenizer, *cfg)
    assert not (tmp_path / "out" / "shards").exists() and len(list((tmp_path / "out" / "shards.work").glob("*.json"))) == 3
    monkeypatch.undo()

    calls = []
    real_tokenizer = shards._tokenizer
    monkeypatch.setattr(shards, "_tokenizer", lambda path: calls.append(path) or real_tokenizer(path))
    resumed = build_shards(inputs, tmp_path / "out", tokenizer, *cfg)
    assert calls == []  # both units came from the scratch of the interrupted run
    assert resumed.counts == fresh.counts and resumed.mixture == fresh.mixture
    for s in fresh.splits["train"]:
        assert (tmp_path / "out" / "shards" / s.file).read_bytes() == (tmp_path / "fresh" / "shards" / s.file).read_bytes()
    assert not (tmp_path / "out" / "shards.work").exists()
    # other settings: the scratch is not reused
    build_shards(inputs, tmp_path / "out", tokenizer, MixtureConfig(seed=3))
    assert len(calls) == 2


@pytest.mark.parametrize("tokenizer_section,message", [
    ({"train": True, "vocab_sise": 8000}, "unknown key"),  # ignored before: a 4096 vocabulary was trained
    ({"train": True, "vocab_size": 2**40}, "vocab_size must be within"),  # aborted the process after every stage
    ({"train": True, "vocab_size": "big"}, "vocab_size: expected an integer"),  # int() traceback after every stage
    ({"train": True, "min_frequency": -1}, "min_frequency must be within"),
    ({"train": True, "train_max_bytes": 0}, "train_max_bytes must be within"),
    ({"train": True, "path": "tok.json"}, "not both"),  # the path won silently
])
def test_the_tokenizer_section_is_checked_before_any_work(tokenizer_section, message):
    from data_pipeline.tokenization import build_stage

    with pytest.raises(ValueError, match=message):
        build_stage({"tokenizer": tokenizer_section, "mixture": None, "holdout": None, "shards": None})
