"""What a careless caller or a hostile config gives the model package, kept as tests: malformed ids and masks, a KV
cache of another batch or dtype, padding-only rows, backends that cannot run here, bf16 casts, bad config values,
prompts that are not token ids."""
import logging
import math

import pytest
import torch

from tiny_model import IDS, tiny

from refact_train.model import KVCache, RefactForCausalLM, alibi_slopes, generate
from refact_train.model.attention import _warn_once
from refact_train.models import model_config


@pytest.mark.parametrize("ids, match", [
    (IDS[0], r"got \[7\] torch.int64 \(one sequence: ids\[None\]\)"),  # "not enough values to unpack" before
    (IDS[None], r"got \[1, 2, 7\]"),  # "too many values to unpack"
    (IDS.float(), r"got \[2, 7\] torch.float32"),
    (IDS.tolist(), "got list"),
])
def test_forward_names_malformed_input_ids(model, ids, match):
    with pytest.raises(ValueError, match="input_ids must be a \\[batch, time\\] tensor of int64 or int32 token ids, "
                                         + match):
        model(ids)


def test_empty_batch_or_sequence_gives_empty_logits(model):
    # both were "cannot reshape tensor of 0 elements into shape [0, 7, -1]"
    assert model(IDS[:0]).shape == (0, 7, 128)
    assert model(IDS[:, :0]).shape == (2, 0, 128)
    assert model(IDS[:0], attention_mask=torch.ones(0, 7)).shape == (0, 7, 128)
    torch.testing.assert_close(model(IDS.int()), model(IDS))  # int32 ids are ids


def test_attention_mask_of_any_binary_dtype_gives_the_same_logits(model):
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, :3] = 0
    want = model(IDS, attention_mask=mask)
    for other in (mask.bool(), mask.int(), mask.float(), mask.to(torch.bfloat16)):
        torch.testing.assert_close(model(IDS, attention_mask=other), want)


@pytest.mark.parametrize("mask, match", [
    (torch.ones(1, 7), r"= \[2, 7\], got \[1, 7\]"),  # broadcast over the batch silently before
    (torch.ones(2, 8), r"= \[2, 7\], got \[2, 8\]"),
    (torch.ones(2, 1, 7), r"= \[2, 7\], got \[2, 1, 7\]"),
    (torch.ones(2, 1, 7, 7), r"= \[2, 7\], got \[2, 1, 7, 7\]"),  # an HF 4-D mask of ones ran silently
])
def test_attention_mask_of_another_shape_is_named(model, mask, match):
    with pytest.raises(ValueError, match="attention_mask must be \\[batch, cached \\+ new positions\\] " + match):
        model(IDS, attention_mask=mask)


def test_additive_or_fractional_mask_is_refused(model):
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, :3] = True
    # HF's extended form (0 keep, -inf mask): .bool() read -inf as real and 0 as padding, so row 1 attended only
    # its padding, and row 0 (all 0) was all padding: logits of a different input, silently
    additive = torch.zeros(2, 7).masked_fill(pad, float("-inf"))
    for bad in (additive, torch.full((2, 7), 0.5), (~pad).long() * 2):
        with pytest.raises(ValueError, match="attention_mask must hold only 1 \\(real token\\) and 0 \\(padding\\)"):
            model(IDS, attention_mask=bad)


def test_a_decoding_step_mask_must_cover_the_cached_positions(model):
    cache = KVCache.for_model(model, 2, 16)
    mask = torch.ones(2, 4, dtype=torch.long)
    mask[1, 0] = 0
    model(IDS[:, :4], attention_mask=mask, cache=cache)
    # a [2, 1] mask for the new token only broadcast over all 5 keys: [[1], [0]] hid row 1's whole prefix, silently
    with pytest.raises(ValueError, match=r"= \[2, 5\], got \[2, 1\]"):
        model(IDS[:, 4:5], attention_mask=torch.tensor([[1], [0]]), cache=cache)
    step = model(IDS[:, 4:5], attention_mask=torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1), cache=cache)
    full = model(IDS[:, :5], attention_mask=torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1))
    torch.testing.assert_close(step[:, -1], full[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "sdpa", "flex", "flash", "auto"])
def test_a_row_of_only_padding_stays_finite_and_does_not_leak(model, backend):
    other = RefactForCausalLM(tiny(attention_backend=backend)).eval()
    other.load_state_dict(model.state_dict())
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1] = 0  # a padding-only row (a batch padded to a longer prompt that was then emptied)
    out = other(IDS, attention_mask=mask)
    assert torch.isfinite(out).all()  # a padding query keeps its own key: no softmax over nothing, no NaN
    torch.testing.assert_close(out[0], model(IDS[:1])[0], atol=1e-5, rtol=1e-5)


def test_a_kv_cache_of_another_batch_dtype_or_model_is_named(model):
    cache = KVCache.for_model(model, 2, 16)
    model(IDS[:, :4], cache=cache)
    with pytest.raises(ValueError, match=r"KV cache holds \[batch 2, .*gives \[batch 1.*KVCache.for_model"):
        model(IDS[:1, 4:5], cache=cache)  # "mat1 and mat2 shapes cannot be multiplied" before
    assert cache.length == 4
    bf16 = RefactForCausalLM(tiny()).eval().to(torch.bfloat16)
    with pytest.raises(ValueError, match="KV cache holds .*torch.float32.*gives .*torch.bfloat16"):
        bf16(IDS, cache=KVCache(2, 2, 16, 16, dtype=torch.float32, device="cpu"))  # sdpa's dtype clash before
    with pytest.raises(ValueError, match="1 layers; .* layer 1"):
        model(IDS, cache=KVCache(1, 2, 16, 16, dtype=torch.float32, device="cpu"))  # an IndexError before
    with pytest.raises(ValueError, match="head_dim 8.*head_dim 16"):
        model(IDS, cache=KVCache(2, 2, 16, 8, dtype=torch.float32, device="cpu"))


def test_positions_past_n_positions_run_with_and_without_the_cache(model):
    """ALiBi has no position table: like the release, the forward runs past n_positions (generate refuses)."""
    ids = torch.randint(5, 128, (1, 45), generator=torch.Generator().manual_seed(1))
    cache = KVCache.for_model(model, 1, 64)
    stepped = torch.cat([model(ids[:, :40], cache=cache), model(ids[:, 40:], cache=cache)], dim=1)
    torch.testing.assert_close(stepped, model(ids), atol=1e-5, rtol=1e-5)


def test_flex_on_cpu_falls_back_to_sdpa_where_gradients_are_tracked(model, caplog):
    flex = RefactForCausalLM(tiny(attention_backend="flex")).eval()
    flex.load_state_dict(model.state_dict())
    _warn_once.cache_clear()  # warned once per process
    with caplog.at_level(logging.WARNING, logger="refact_train.model.attention"):
        out = flex(IDS)  # NotImplementedError "FlexAttention does not support backward on CPU" before, even in eval
    assert "flex attention has no backward on cpu; using sdpa" in caplog.text
    torch.testing.assert_close(out, model(IDS), atol=1e-5, rtol=1e-5)
    out.sum().backward()  # and training runs
    with torch.no_grad():  # without gradients FlexAttention itself runs: T=1 and odd T agree with sdpa
        for t in (1, 3, 7):
            torch.testing.assert_close(flex(IDS[:, :t]), model(IDS[:, :t]), atol=1e-5, rtol=1e-5)


def test_alibi_slopes_stay_float32_when_the_weights_move_to_bf16():
    model = RefactForCausalLM(tiny(n_head=32, n_embd=64)).to(torch.bfloat16)
    assert model.lm_head.weight.dtype == torch.bfloat16
    # before: the buffer was cast too, 2^(-1/4) etc. rounded by up to 0.2% (an HF load kept them float32)
    assert model.alibi_slopes.dtype == torch.float32 and torch.equal(model.alibi_slopes, alibi_slopes(32))
    with torch.device("meta"):
        meta = RefactForCausalLM(tiny(n_head=6, n_embd=48))
    meta.to_empty(device="cpu")  # uninitialised memory before, unless reset_parameters ran
    assert torch.equal(meta.alibi_slopes, alibi_slopes(6))


def test_bf16_forward_is_close_to_float32(model):
    for backend in ("reference", "sdpa"):
        bf16 = RefactForCausalLM(tiny(attention_backend=backend)).eval()
        bf16.load_state_dict(model.state_dict())
        bf16.to(torch.bfloat16)
        mask = torch.ones(2, 7)
        mask[0, :4] = 0
        torch.testing.assert_close(bf16(IDS, attention_mask=mask).float(), model(IDS, attention_mask=mask),
                                   atol=2e-2, rtol=0)


def test_checkpointing_same_grads_with_padding_and_dropout(model):
    mask = torch.ones(2, 7)
    mask[1, :2] = 0
    grads = []
    for ckpt in (False, True):
        m = RefactForCausalLM(tiny(dropout=0.2)).train()
        m.load_state_dict(model.state_dict())
        m.set_activation_checkpointing(ckpt)
        torch.manual_seed(5)  # the recomputed forward replays the same dropout masks
        m(IDS, attention_mask=mask).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("key, value", [
    ("dropout", 1.0), ("dropout", 1.5), ("dropout", -0.1), ("dropout", math.nan),
    ("layer_norm_epsilon", -1.0), ("layer_norm_epsilon", math.nan), ("layer_norm_epsilon", math.inf),
    ("initializer_range", -0.02), ("initializer_range", math.nan),
])
def test_config_values_out_of_range_are_named(key, value):
    """dropout 1.0 trained on zeros, layer_norm_epsilon -1 or NaN gave NaN logits, dropout 1.5 failed at the first
    training forward and a negative initializer_range inside torch's normal_, none naming the key."""
    with pytest.raises(ValueError, match=f"model config: {key} must be"):
        model_config(dict(vocab_size=64, n_embd=32, n_head=2, n_layer=1, **{key: value}))


@pytest.mark.parametrize("prompts, match", [
    ([[5.7, 6.2]], "prompt 0 must be a list of integer token ids; it holds 5.7"),  # read as [5, 6] silently
    ([[5], [True, 6]], "prompt 1 must be a list of integer token ids; it holds True"),
    ([[[5]]], r"prompt 0 must be a list of integer token ids; it holds \[5\]"),  # ran as [5] silently
    (["abc"], "prompt 0 must be a list of integer token ids; it holds 'a'"),
    ([5, 6], r"prompts must be a list of prompts, each a list of token ids \(one prompt: \[ids\]\); item 0 is 5"),
    ([[2**70]], "prompt token id 1180591620717411303424 is outside"),  # "Overflow when unpacking long long"
    ([], "no prompts given"),
    ([[3], []], "every prompt needs at least one token"),
])
def test_generate_names_prompts_that_are_not_token_ids(model, prompts, match):
    with pytest.raises(ValueError, match="generate: " + match):
        generate(model, prompts, 2)


def test_generate_accepts_tensor_prompts(model):
    want = generate(model, [[5, 6, 7]], 3, stop_token_ids=())
    assert generate(model, [torch.tensor([5, 6, 7])], 3, stop_token_ids=()) == want
    assert generate(model, torch.tensor([[5, 6, 7]]), 3, stop_token_ids=()) == want  # "ambiguous" before


def test_generate_checks_pad_and_stop_ids(model):
    for pad in (128, -1, 2.0):  # fills the left padding: an IndexError from the embedding before
        with pytest.raises(ValueError, match=f"pad_token_id must be an id in \\[0, 128\\).*got {pad}"):
            generate(model, [[5, 6, 7], [8]], 2, pad_token_id=pad)
    with pytest.raises(ValueError, match="pad_token_id must be an id in \\[0, 128\\).*got 500"):
        generate(RefactForCausalLM(tiny(pad_token_id=500)), [[5, 6, 7], [8]], 2)
    with pytest.raises(ValueError, match="stop_token_ids must be integer token ids, got 'ab'"):
        generate(model, [[5]], 2, stop_token_ids="ab")
    # an id the model cannot produce never stops a row ("Overflow when unpacking long long" before)
    assert generate(model, [[5]], 3, stop_token_ids=(2**70,)) == generate(model, [[5]], 3, stop_token_ids=())
