"""What a caller gives the model at inference time, kept as tests: a KV cache filled with padding then stepped without
its mask, token ids past the embedding, generate's edge options, failed calls that must leave the cache and the model
as they were, and decoding that must not depend on the cache or on the batch a prompt shares."""
import pytest
import torch

from tiny_model import IDS, tiny

from refact_train.model import KVCache, RefactForCausalLM, generate


MASK = torch.tensor([[1] * 7, [0, 0, 0, 1, 1, 1, 1]])  # row 1 left-padded by 3


def prefilled(model, mask=MASK):
    cache = KVCache.for_model(model, 2, 16)
    model(IDS[:, :6], attention_mask=None if mask is None else mask[:, :6], cache=cache)
    return cache


@torch.no_grad()
def test_a_padded_cache_stepped_without_its_mask_is_refused(model):
    want = model(IDS, attention_mask=MASK)[:, -1]  # the whole sequence at once, masked
    cache = prefilled(model)
    # the step attended to row 1's three padding keys: its logits off by 0.11, no error
    with pytest.raises(ValueError, match=r"this KV cache holds left padding .* pass attention_mask \[batch, cached "
                                         r"\+ new positions\] = \[2, 7\] on every forward"):
        model(IDS[:, 6:], cache=cache)
    assert cache.length == 6  # the refused step left the cache as it was
    step = model(IDS[:, 6:], attention_mask=MASK, cache=cache)[:, -1]
    torch.testing.assert_close(step, want, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_a_step_mask_must_repeat_the_mask_the_cache_was_filled_with(model):
    cache = prefilled(model)
    with pytest.raises(ValueError, match="its first 6 columns must repeat the mask this KV cache was filled with"):
        model(IDS[:, 6:], attention_mask=torch.ones(2, 7), cache=cache)  # row 1's padding read as real, silently
    unpadded = prefilled(model, mask=None)
    with pytest.raises(ValueError, match="its first 6 columns must repeat"):
        model(IDS[:, 6:], attention_mask=MASK, cache=unpadded)  # keys computed attending what it now calls padding
    assert cache.length == unpadded.length == 6


@torch.no_grad()
def test_an_unpadded_cache_steps_with_or_without_a_mask(model):
    want = model(IDS)[:, -1]
    for prefill_mask, step_mask in ((None, None), (torch.ones(2, 7), None), (None, torch.ones(2, 7)),
                                    (torch.ones(2, 7), torch.ones(2, 7, dtype=torch.bool))):
        step = model(IDS[:, 6:], attention_mask=step_mask, cache=prefilled(model, prefill_mask))[:, -1]
        torch.testing.assert_close(step, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ids, where", [
    (torch.tensor([[5, 128]]), r"token id 128 at \[0, 1\]"),  # "index out of range in self" before
    (torch.tensor([[5, 6], [-1, 7]]), r"token id -1 at \[1, 0\]"),
    (torch.tensor([[5, 2**31 - 1]], dtype=torch.int32), r"token id 2147483647 at \[0, 1\]"),
])
def test_token_ids_past_the_embedding_are_named(model, ids, where):
    message = where + r" is outside the model's 128 embedding rows \[0, 128\) \(is the tokenizer the model's\?\)"
    with pytest.raises(ValueError, match=message):
        model(ids)  # with gradients (a training step on CPU)
    with torch.no_grad(), pytest.raises(ValueError, match=message):
        model(ids, attention_mask=torch.ones_like(ids))
    cache = KVCache.for_model(model, ids.shape[0], 8)
    with torch.no_grad(), pytest.raises(ValueError, match=message):
        model(ids, cache=cache)
    assert cache.length == 0
    assert model(ids.clamp(0, 127)).shape == (ids.shape[0], 2, 128)  # the first and last rows are ids


def test_a_failed_forward_leaves_the_cache_where_it_was(model):
    cache = KVCache.for_model(model, 2, 8)
    model(IDS[:, :6], cache=cache)
    with pytest.raises(ValueError, match="KV cache overflow: 10 positions > max_len 8"):
        model(IDS[:, :4], cache=cache)
    with pytest.raises(ValueError, match=r"attention_mask must be .* = \[2, 8\]"):
        model(IDS[:, :2], attention_mask=torch.ones(2, 7), cache=cache)
    assert cache.length == 6
    stepped = model(IDS[:, 6:], cache=cache)  # the cache still serves the next step
    torch.testing.assert_close(stepped[:, -1], model(IDS)[:, -1], atol=1e-5, rtol=1e-5)


def test_generate_takes_stop_ids_as_a_tensor_or_one_id(model):
    greedy = generate(model, [[3, 4, 5]], 12, stop_token_ids=())[0]
    stop = greedy[4]
    want = [greedy[:greedy.index(stop)]]
    # a tensor was "must be integer token ids, got tensor([..])", one id "'int' object is not iterable"
    for given in ([stop], torch.tensor([stop, 2**40]), torch.tensor(stop), stop):
        assert generate(model, [[3, 4, 5]], 12, stop_token_ids=given) == want
    for bad in (None, 2.0, torch.tensor([0.5]), "ab"):
        with pytest.raises(ValueError, match="generate: stop_token_ids must be integer token ids, got .*one id; "
                                             r"\(\) for none"):
            generate(model, [[3, 4, 5]], 2, stop_token_ids=bad)


def test_a_failed_generate_leaves_the_model_in_its_mode():
    torch.manual_seed(0)
    training = RefactForCausalLM(tiny(dropout=0.1)).train()
    with pytest.raises(ValueError, match="exceed n_positions"):
        generate(training, [[5] * 30], 5)
    assert training.training  # left in eval mode before: the next training steps ran without dropout, silently
    with torch.no_grad():
        training.transformer.h[0].mlp.c_proj.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="logits hold NaN"):
        generate(training, [[5, 6]], 3)
    assert training.training and all(m.training for m in training.modules())
    evaluating = RefactForCausalLM(tiny()).eval()
    with pytest.raises(ValueError, match="exceed n_positions"):
        generate(evaluating, [[5] * 30], 5)
    assert not evaluating.training


@pytest.mark.parametrize("sizes, match", [
    ((0, 1, 8, 16), "n_layer must be an integer >= 1, got 0"),  # an IndexError at the first forward before
    ((2, 1, -1, 16), "max_len must be an integer >= 0, got -1"),  # torch.empty's "negative dimension"
    ((2, 1, 2.5, 16), "max_len must be an integer >= 0, got 2.5"),  # torch.empty's unpack TypeError
    ((2, -1, 8, 16), "batch_size must be an integer >= 0, got -1"),
    ((2, 1, 8, True), "head_dim must be an integer >= 1, got True"),
])
def test_a_kv_cache_of_impossible_sizes_is_named(sizes, match):
    with pytest.raises(ValueError, match="KVCache: " + match):
        KVCache(*sizes, dtype=torch.float32, device="cpu")


@pytest.mark.parametrize("cache", [True, ((torch.zeros(1), torch.zeros(1)),)])
def test_a_cache_that_is_not_a_kv_cache_is_named(model, cache):
    # HF habits (use_cache=True, a past_key_values tuple): "'bool' object has no attribute 'length'" before
    with pytest.raises(ValueError, match=r"cache must be a KVCache \(KVCache.for_model\(model, batch_size, max_len\)\) "
                                         "or None, got (bool|tuple)"):
        model(IDS, cache=cache)


def test_generate_at_the_edges_of_n_positions_and_max_new_tokens(model):
    assert generate(model, [[5] * 32], 0) == [[]]  # a prompt of exactly n_positions, nothing new
    assert generate(model, [[5] * 31], 1, stop_token_ids=()) == [generate(model, [[5] * 31], 1, use_cache=False,
                                                                          stop_token_ids=())[0]]
    assert generate(model, [[5, 6], [7]], 0) == [[], []]
    for prompt, new in (([5] * 32, 1), ([5] * 33, 0)):
        with pytest.raises(ValueError, match=f"generate: {len(prompt)} prompt \\+ {new} new tokens exceed n_positions"):
            generate(model, [prompt], new)


PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [20], [30, 31, 32], [40, 41]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_left_padded_batches_decode_as_each_prompt_alone_with_or_without_the_cache(model, dtype):
    """Kept tries (right already): the cache, the batch a prompt shares and bf16 on CPU change no token."""
    m = RefactForCausalLM(tiny()).eval()
    m.load_state_dict(model.state_dict())
    m.to(dtype)
    greedy = generate(m, PROMPTS, 20, stop_token_ids=())
    assert generate(m, PROMPTS, 20, stop_token_ids=(), use_cache=False) == greedy
    assert [generate(m, [p], 20, stop_token_ids=())[0] for p in PROMPTS] == greedy
    sampled = dict(temperature=1.0, top_p=0.9, seed=5, stop_token_ids=())
    assert generate(m, PROMPTS, 20, **sampled) == generate(m, PROMPTS, 20, use_cache=False, **sampled)


@torch.no_grad()
def test_padded_batch_logits_match_each_prompt_alone_step_by_step(model):
    longest = max(map(len, PROMPTS))
    ids = torch.tensor([[0] * (longest - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in PROMPTS])
    nxt = torch.randint(5, 128, (len(PROMPTS), 6), generator=torch.Generator().manual_seed(1))
    batch_cache = KVCache.for_model(model, len(PROMPTS), longest + 6)
    batched = [model(ids, attention_mask=mask, cache=batch_cache)[:, -1]]
    for t in range(6):
        mask = torch.cat([mask, torch.ones(len(PROMPTS), 1, dtype=mask.dtype)], dim=1)
        batched.append(model(nxt[:, t:t + 1], attention_mask=mask, cache=batch_cache)[:, -1])
    for row, prompt in enumerate(PROMPTS):
        cache = KVCache.for_model(model, 1, longest + 6)
        alone = [model(torch.tensor([prompt]), cache=cache)[:, -1]]
        alone += [model(nxt[row:row + 1, t:t + 1], cache=cache)[:, -1] for t in range(6)]
        for step, (b, a) in enumerate(zip(batched, alone)):
            torch.testing.assert_close(b[row], a[0], atol=1e-5, rtol=1e-5, msg=f"prompt {row}, step {step}")
