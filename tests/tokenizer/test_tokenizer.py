import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from data_pipeline.tokenizer import SPECIAL_TOKENS, load_tokenizer, padded_vocab_size, train_bpe


def _stdlib_texts(n=40):
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted((root / "json").glob("*.py")) + sorted((root / "email").glob("*.py"))
    return [f.read_text(encoding="utf-8") for f in files[:n]]


@pytest.fixture(scope="module")
def tok():
    return train_bpe(_stdlib_texts(), vocab_size=1000)


def test_special_tokens_in_release_order(tok):
    assert len(SPECIAL_TOKENS) == 19
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.tokenizer.token_to_id(t) == i
    assert (tok.eot_id, tok.fim_prefix_id, tok.fim_middle_id, tok.fim_suffix_id, tok.fim_pad_id) == (0, 1, 2, 3, 4)
    assert tok.tokenizer.token_to_id("<empty_output>") == 14 and tok.tokenizer.token_to_id("<reponame>") == 18


def test_padded_vocab():
    assert padded_vocab_size(49152) == 49152 and padded_vocab_size(49153) == 49216
    assert padded_vocab_size(64) == 64 and padded_vocab_size(65) == 128


def test_vocab_size_and_dtype(tok):
    assert tok.vocab_size == 1000
    assert tok.padded_vocab_size == 1024
    assert tok.token_dtype is np.uint16


@pytest.mark.parametrize(
    "text",
    ["", "plain ascii", "héllo wörld 日本語 🤖 \u200b\ufeff", "def f(x):\n\treturn x  \r\n\n\n", "a" * 3000, "\x00\x01\x7f"],
)
def test_text_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_literal_special_token_text_is_not_a_special_id(tok):
    ids = tok.encode("x = '<|endoftext|><fim_prefix>'")
    assert all(i > 18 for i in ids)
    assert tok.decode(ids) == "x = '<|endoftext|><fim_prefix>'"


@pytest.mark.parametrize(
    "data",
    [b"abc\xff\xfe def", b"\xc3\x28 broken 2-byte", b"tail \xe2\x82", bytes(range(256)), b"\x80" * 10 + "ok é".encode()],
)
def test_invalid_utf8_bytes_round_trip(tok, data):
    assert tok.decode_bytes(tok.encode_bytes(data)) == data


def test_random_bytes_round_trip(tok):
    rng = np.random.default_rng(0)
    for _ in range(50):
        data = rng.integers(0, 256, size=int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
        assert tok.decode_bytes(tok.encode_bytes(data)) == data


def test_save_load_and_transformers(tok, tmp_path):
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.sha256 == tok.sha256
    text = "import os\nprint(os.getcwd())\n"
    assert again.encode(text) == tok.encode(text)
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf.eos_token_id == 0 and hf.pad_token_id == 4
    assert hf("<fim_prefix>x<fim_suffix>")["input_ids"][0] == 1  # HF users' prompt strings still parse specials
    assert hf.decode(tok.encode(text)) == text


def test_load_vocab_and_merges(tok, tmp_path):
    data = json.loads(tok.tokenizer.to_str())
    vocab = data["model"]["vocab"]
    merges = data["model"]["merges"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    lines = ["#version: 0.2"] + [m if isinstance(m, str) else " ".join(m) for m in merges]
    (tmp_path / "merges.txt").write_text("\n".join(lines) + "\n")
    loaded = load_tokenizer(tmp_path)
    text = "for key, value in items():\n    pass\n"
    assert loaded.encode(text) == tok.encode(text)
    assert loaded.tokenizer.token_to_id("<fim_middle>") == 2


def test_missing_tokenizer_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_tokenizer(tmp_path)


def test_chat_prompt_matches_the_sft_encoding_of_the_same_turns(tok):
    """The prompt refact-generate / refact-eval build is the prefix that chat SFT trains the answer after."""
    from data_pipeline.tokenizer import chat_prompt_ids
    from data_pipeline.tokenizer import encode_chat

    turns = [{"role": "system", "content": "You are a programming assistant"},
             {"role": "user", "content": "Reverse a string (in Python)"}]
    prompt = chat_prompt_ids(tok, turns)
    ids, mask = encode_chat(turns + [{"role": "assistant", "content": "return s[::-1]"}], tok)
    assert ids[: len(prompt)] == prompt
    assert not any(mask[: len(prompt)]) and all(mask[len(prompt):])
    assert prompt.count(tok.empty_output_id) == 3


def test_a_file_that_is_no_tokenizer_is_named(tmp_path):
    from data_pipeline.cli import main
    junk = tmp_path / "tokenizer.json"
    junk.write_text("junk")  # the library's bare Exception named no file; the pipeline found it after all other stages
    with pytest.raises(ValueError, match=r"tokenizer\.json: not a tokenizer the `tokenizers` library can read"):
        load_tokenizer(junk)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.py").write_text("x = 1\n")
    assert main([f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", f"tokenizer={junk}"]) == 2
    assert not (tmp_path / "out").exists()



@pytest.mark.parametrize("texts,kwargs,message", [
    ([], {}, "no text to train on"),  # was a 275-token tokenizer of bytes alone, silently
    (["", ""], {}, "no text to train on"),
    (["hello world"], {"vocab_size": 2**40}, "vocab_size"),  # the BPE trainer's Rust allocation aborted the process
    (["hello world"], {"vocab_size": 4096.0}, "vocab_size"),
    (["hello world"], {"min_frequency": -1}, "min_frequency"),  # OverflowError naming nothing
])
def test_train_bpe_refuses_what_it_cannot_train(texts, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_bpe(texts, **kwargs)


def test_train_bpe_on_one_short_document():
    tok = train_bpe(["ab"], vocab_size=300)
    assert tok.decode(tok.encode("abba")) == "abba" and tok.vocab_size <= 300


def test_another_models_tokenizer_with_only_the_fim_specials_is_refused(tmp_path):
    # byte-level and right at ids 0-4, but id 14 was a byte token: chat prompts and generation stops used it
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    other = Tokenizer(models.BPE())
    other.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    other.train_from_iterator(["hello world"] * 10, trainers.BpeTrainer(
        vocab_size=300, special_tokens=list(SPECIAL_TOKENS[:5]), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    other.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="'<filename>' has id None, expected 5"):
        load_tokenizer(tmp_path)
