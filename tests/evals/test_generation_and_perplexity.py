import numpy as np
import torch
import torch.nn.functional as F

from evals.generation import BatchGenerator, GenerationConfig
from evals.perplexity import token_windows, window_nll
from refact_train.hf import load_hf_checkpoint
from refact_train.model import generate


def test_batched_generation_matches_one_prompt_at_a_time(tiny_model_dir, one_thread):
    model, _ = load_hf_checkpoint(tiny_model_dir)
    prompts = [[5, 6, 7], [8] * 11, [9, 10], [11] * 6, [12] * 20]
    gen = BatchGenerator(model, GenerationConfig(batch_size=3, max_new_tokens=8))
    batched = gen.run(prompts, stop_token_ids=[0])
    single = [generate(model, [p], 8, stop_token_ids=(0,))[0] for p in prompts]
    assert batched == single  # greedy, so left padding and the length-sorted order must not change anything
    assert gen.stats.prompts == 5 and gen.stats.new_tokens == sum(len(s) for s in single)


def test_overlong_prompts_keep_their_end(tiny_model_dir):
    model, _ = load_hf_checkpoint(tiny_model_dir)
    gen = BatchGenerator(model, GenerationConfig(max_new_tokens=16))
    long_prompt = list(range(5, 5 + 600))
    fitted = gen.fit_prompt(long_prompt, 16)
    assert fitted == long_prompt[-(512 - 16):]
    assert gen.room(len(fitted), 16) == 16


def test_no_new_tokens_asked_gives_none(tiny_model_dir):
    """max_new_tokens=0 generated one token, and a prompt kept at n_positions then failed with 'exceed n_positions'."""
    model, _ = load_hf_checkpoint(tiny_model_dir)
    gen = BatchGenerator(model, GenerationConfig(max_new_tokens=16))
    prompts = [[5, 6, 7], [5 + i % 100 for i in range(600)]]  # the second longer than n_positions (512)
    assert gen.run(prompts, stop_token_ids=[0], max_new_tokens=0) == [[], []]
    assert gen.stats.new_tokens == 0
    assert [len(ids) for ids in gen.run(prompts, stop_token_ids=[], max_new_tokens=1)] == [1, 1]


def test_windows_cover_the_stream():
    shards = [np.arange(10, dtype=np.uint16), np.arange(10, 15, dtype=np.uint16)]
    windows = token_windows(shards, context=4, max_windows=None)
    assert [w.tolist() for w in windows] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14]]
    assert len(token_windows(shards, context=4, max_windows=2)) == 2


def test_padded_batches_give_the_same_nll_as_single_windows(tiny_model_dir, one_thread):
    model, _ = load_hf_checkpoint(tiny_model_dir)
    rng = np.random.default_rng(0)
    windows = [rng.integers(19, 300, size=n) for n in (17, 9, 30)]
    batched, targets = window_nll(model, windows, batch_size=3, device="cpu")
    expected = 0.0
    with torch.no_grad():
        for w in windows:
            ids = torch.from_numpy(w)[None]
            logits = model(ids[:, :-1])
            expected += float(F.cross_entropy(logits[0], ids[0, 1:], reduction="sum"))
    assert abs(batched - expected) <= 1e-4 * expected
    assert [t.tolist() for t in targets] == [w[1:].tolist() for w in windows]


def test_stop_sequences_end_rows_early_without_changing_the_text(tiny_model_dir, one_thread):
    from data_pipeline.tokenizer import load_tokenizer
    from evals.humaneval import truncate_at_stop

    model, _ = load_hf_checkpoint(tiny_model_dir)
    tok = load_tokenizer(tiny_model_dir)
    prompts = [tok.encode("def f(x):\n"), tok.encode("import os\n\nclass A:\n    pass\n")]
    full = BatchGenerator(model, GenerationConfig(batch_size=2, max_new_tokens=24)).run(prompts, [-1])
    # a stop string that the first row's greedy text reaches after ~10 tokens; the second row may never meet it
    stop = tok.decode(full[0][9:11])
    gen = BatchGenerator(model, GenerationConfig(batch_size=2, max_new_tokens=24, stop_check_tokens=4))
    rounds = gen.run(prompts, [-1], stop_sequences=[stop], decode=tok.decode)
    assert len(rounds[0]) < 24 and stop in tok.decode(rounds[0])  # stopped in the round that produced the stop
    for a, b in zip(rounds, full):
        assert b[:len(a)] == a  # continuing from prompt + generated gives the same greedy tokens
        assert truncate_at_stop(tok.decode(a), [stop]) == truncate_at_stop(tok.decode(b), [stop])
    plain = BatchGenerator(model, GenerationConfig(batch_size=2, max_new_tokens=24, stop_check_tokens=4))
    assert plain.run(prompts, [-1], stop_sequences=["\x00 never"], decode=tok.decode) == full


def test_the_generator_never_produces_the_embeddings_padding_rows(tiny_model_dir):
    """refact-eval's generations could hold ids of the embedding's padding rows (past the tokenizer): decode dropped
    them, so a completion lost tokens without a word."""
    model, _ = load_hf_checkpoint(tiny_model_dir)
    rows = model.config.vocab_size
    with torch.no_grad():
        model.lm_head.weight[rows - 12:] *= 50  # the last 12 rows dominate greedy and sampled decoding
    prompts = [[5, 6, 7], [8] * 11]
    for temperature in (0.0, 1.0):
        cfg = GenerationConfig(max_new_tokens=12, temperature=temperature)
        unbounded = BatchGenerator(model, cfg, seed=1).run(prompts, stop_token_ids=[])
        assert any(i >= rows - 12 for ids in unbounded for i in ids)  # the rows do win without the bound
        bounded = BatchGenerator(model, cfg, seed=1, vocab_size=rows - 12).run(prompts, stop_token_ids=[])
        assert all(i < rows - 12 for ids in bounded for i in ids) and all(len(ids) == 12 for ids in bounded)
