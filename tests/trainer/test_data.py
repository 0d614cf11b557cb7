"""The loader: packed windows across shards, deterministic order, per-rank slices, FIM and loss masks, chat SFT."""
import json

import numpy as np
import pytest

from refact_train.data import DataConfig, PackedSamples, StepLoader, TokenStream, epoch_order, layout_for


def test_stream_reads_across_shard_boundaries(corpus_dir):
    s = TokenStream(corpus_dir)
    first = len(s.arrays[0])
    window = s.read(first - 5, 10)
    assert list(window[:5]) == list(s.arrays[0][-5:]) and list(window[5:]) == list(s.arrays[1][:5])
    assert s.read(0, len(s)).tolist() == np.concatenate([np.asarray(a) for a in s.arrays]).tolist()


def test_samples_are_windows_of_the_stream_in_a_seeded_order(corpus_dir):
    cfg = DataConfig(path=str(corpus_dir), seq_len=32, seed=7)
    a, b = PackedSamples(cfg), PackedSamples(cfg)
    ts = TokenStream(corpus_dir)
    stream = ts.read(0, len(ts))
    order = epoch_order(7, 0, a.n_samples)
    assert sorted(order.tolist()) == list(range(a.n_samples))  # one epoch visits every window once
    for g in range(0, a.n_samples, 7):
        tokens, mask = a[g]
        assert len(tokens) == 33 and mask.all()
        assert np.array_equal(tokens, b[g][0])  # a pure function of (data, seed, g)
        k = int(order[g])
        assert np.array_equal(tokens, stream[k * 32:k * 32 + 33])
    other = PackedSamples(DataConfig(path=str(corpus_dir), seq_len=32, seed=8))
    assert any(not np.array_equal(a[g][0], other[g][0]) for g in range(5))
    # the next epoch is another permutation of the same windows
    assert not all(np.array_equal(a[g][0], a[g + a.n_samples][0]) for g in range(5))


def test_each_rank_gets_its_slice_and_the_global_batch_is_independent_of_world_size(corpus_dir):
    samples = PackedSamples(DataConfig(path=str(corpus_dir), seq_len=16))
    one = StepLoader(samples, layout_for(8, 2, 1, 0)).step_batches(start=40)
    two = [StepLoader(samples, layout_for(8, 2, 2, r)).step_batches(start=40) for r in range(2)]
    idx_one = sorted(i for b in one for i in b.sample_indices)
    idx_two = [i for rank in two for b in rank for i in b.sample_indices]
    assert idx_one == sorted(idx_two) == list(range(40, 48))
    assert not set(i for b in two[0] for i in b.sample_indices) & set(i for b in two[1] for i in b.sample_indices)
    b = one[0]
    assert b.input_ids.shape == (2, 16) and bool((b.input_ids[:, 1:] == b.labels[:, :-1]).all())
    with pytest.raises(ValueError, match="global_batch"):
        layout_for(10, 4, 2, 0)


def test_fim_pretrain_samples_and_sentinel_mask(corpus_dir):
    from data_pipeline.tokenizer import load_tokenizer
    tok = load_tokenizer(corpus_dir / "shards" / "tokenizer.json")
    fim = {"mode": "pretrain", "rate": 1.0, "loss_on_sentinels": False}
    s = PackedSamples(DataConfig(path=str(corpus_dir), seq_len=128, seed=3, fim=fim), tok)
    tokens, mask = s[5]
    assert len(tokens) == len(mask) == 129
    assert {tok.fim_prefix_id, tok.fim_suffix_id, tok.fim_middle_id} & set(tokens.tolist())
    sentinels = np.isin(tokens, [tok.fim_prefix_id, tok.fim_suffix_id, tok.fim_middle_id])
    assert not mask[sentinels].any()  # no loss on sentinels when configured so
    assert not mask[tokens == tok.fim_pad_id].any()  # nor on padding
    again, _ = PackedSamples(DataConfig(path=str(corpus_dir), seq_len=128, seed=3, fim=fim), tok)[5]
    assert np.array_equal(tokens, again)


def test_missing_shards_error_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="refact-pipeline"):
        TokenStream(tmp_path)


def test_chat_sft_masks_assistant_turns_only(corpus_dir, tmp_path):
    from data_pipeline.tokenizer import encode_chat
    from refact_train.chat_sft import ChatSamples
    from data_pipeline.tokenizer import load_tokenizer
    tok = load_tokenizer(corpus_dir / "shards" / "tokenizer.json")
    conv = [{"role": "system", "content": "You are a coder."}, {"role": "user", "content": "add two numbers"},
            {"role": "assistant", "content": "def add(a, b):\n    return a + b"}]
    ids, mask = encode_chat(conv, tok)
    text_on = tok.decode([i for i, m in zip(ids, mask) if m])
    text_off = tok.decode([i for i, m in zip(ids, mask) if not m])
    assert "return a + b" in text_on and "add two numbers" not in text_on and "ASSISTANT" in text_off
    assert ids.count(tok.empty_output_id) == 3 and ids[-1] == tok.eot_id and mask[-1]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps({"messages": conv}) for _ in range(3)))
    tokens, m = ChatSamples(path, tok, seq_len=256, seed=1)[0]
    assert len(tokens) == 257 and (tokens[len(ids):] == tok.fim_pad_id).all() and not m[len(ids):].any()


def test_chat_sft_trains_through_the_trainer(corpus_dir, tmp_path):
    from helpers import losses, train_inprocess
    conv = [{"role": "user", "content": "print hello"}, {"role": "assistant", "content": "print('hello')"}]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps({"messages": conv}) for _ in range(8)))
    train_inprocess(["data=chat", f"data.path={path}", "data.seq_len=32", f"tokenizer={corpus_dir}/shards",
                     f"run_dir={tmp_path / 'run'}", "train.max_steps=4", "checkpoint.every=4"])
    ls = losses(tmp_path / "run")
    assert ls[4] < ls[1]


def test_shards_of_another_tokenizer_are_refused(corpus_dir):
    from data_pipeline.shards import ManifestError
    from data_pipeline.tokenizer import load_tokenizer
    tok = load_tokenizer(corpus_dir / "shards" / "tokenizer.json")
    assert len(TokenStream(corpus_dir, tokenizer_sha256=tok.sha256)) > 0
    with pytest.raises(ManifestError, match=f"tokenizer sha256 {tok.sha256}, the given tokenizer is {'0' * 64}"):
        PackedSamples(DataConfig(path=str(corpus_dir), seq_len=64), type("Tok", (), {"sha256": "0" * 64})())


def test_a_token_id_outside_the_vocabulary_is_named_not_fed_to_the_model(corpus_dir, tmp_path):
    """A damaged .bin (an id >= the vocabulary) used to reach the embedding: an IndexError on CPU, a device-side
    assert on GPU. The read that meets it names the file and the position."""
    import shutil
    from data_pipeline.shards import ManifestError
    data = tmp_path / "data"
    shutil.copytree(corpus_dir, data)
    path = data / "shards" / "train-00001.bin"
    tokens = np.fromfile(path, dtype=np.uint16)
    tokens[1234] = 5000  # the vocabulary has 768 entries
    tokens.tofile(path)
    stream = TokenStream(data)
    start = len(stream.arrays[0]) + 1230
    assert stream.read(start - 10, 14).max() < 768  # the ids before it read as before
    with pytest.raises(ManifestError, match=r"train-00001.bin: token 1234 is id 5000, outside the 768-entry"):
        stream.read(start, 10)
    samples = PackedSamples(DataConfig(path=str(data), seq_len=64))
    with pytest.raises(ManifestError, match="train-00001.bin: token 1234 is id 5000"):
        for g in range(samples.n_samples):
            samples[g]


def test_a_train_split_too_small_to_train_on_stops_refact_train_with_one_line(corpus_dir, tmp_path):
    """No document in train (a mixture of zero weights), or seq_len longer than the split: a Hydra traceback of a
    ValueError before; exit 2 and one line now."""
    import subprocess
    import sys
    from helpers import TINY, cli_env
    from trainer_corpus import with_split
    empty = with_split(corpus_dir, tmp_path / "empty", "train", [])
    for data, extra, said in ((empty, [], "split 'train' has no tokens"),
                              (corpus_dir, ["data.seq_len=100000", "model.n_positions=131072"],
                               "fewer than one sample of seq_len+1 = 100001")):
        proc = subprocess.run([sys.executable, "-m", "refact_train.cli.train", *TINY, f"data.path={data}",
                               f"run_dir={tmp_path / 'run'}", *extra], capture_output=True, text=True, timeout=300,
                              env=cli_env())
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and said in proc.stderr, proc.stderr[-3000:]
