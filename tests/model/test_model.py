import math

import pytest
import torch

from refact_train.model import (
    RefactConfig, RefactForCausalLM, alibi_slopes, attention, generate, reference_attention, swiglu_hidden,
)
from refact_train.models import load_model_config, model_config

RELEASE_SHAPES = {
    "transformer.wte.weight": (49216, 2048),
    "transformer.h.0.ln_1.weight": (2048,),
    "transformer.h.0.attn.q.weight": (2048, 2048),
    "transformer.h.0.attn.kv.weight": (128, 2048),
    "transformer.h.0.attn.c_proj.weight": (2048, 2048),
    "transformer.h.0.ln_2.weight": (2048,),
    "transformer.h.0.mlp.gate_up_proj.weight": (11264, 2048),
    "transformer.h.0.mlp.c_proj.weight": (2048, 5632),
    "ln_f.weight": (2048,),
    "lm_head.weight": (49216, 2048),
}


def tiny(**kw):
    base = dict(vocab_size=128, n_embd=64, n_head=4, n_layer=2, n_positions=256)
    base.update(kw)
    return RefactConfig(**base)


def test_release_shape_counts_exact_parameters_on_meta():
    cfg = load_model_config("refact_1_6b")
    with torch.device("meta"):
        model = RefactForCausalLM(cfg)
    assert model.num_parameters() == 1_585_842_176
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name, shape in RELEASE_SHAPES.items():
        assert shapes[name] == shape, name
    assert len(shapes) == 3 + 7 * 32  # wte, ln_f, lm_head + 7 tensors per layer; no biases anywhere
    assert not any(k.endswith(".bias") for k in shapes)


def test_swiglu_rule():
    # the argument is the release's n_inner, the "4*E" width
    assert swiglu_hidden(4 * 2048) == 5632
    assert swiglu_hidden(4 * 256) == 768
    assert swiglu_hidden(400) == 512  # int(800/3) = 266 -> 2 * 256


def test_n_inner_is_the_release_four_e_width(tmp_path):
    """n_inner as the release reads it: the MLP is 256 * ceil(int(2 * n_inner / 3) / 256) wide, not n_inner."""
    release = load_model_config("refact_1_6b")
    assert release.n_inner is None and release.mlp_hidden == 5632
    path = tmp_path / "explicit.yaml"
    path.write_text("n_inner: 8192\n")  # what null means, written out
    explicit = load_model_config(path)
    assert explicit.n_inner == 8192 and explicit.mlp_hidden == 5632
    with torch.device("meta"):
        assert RefactForCausalLM(explicit).num_parameters() == 1_585_842_176
    path.write_text("n_inner: 6144\n")  # int(2 * 6144 / 3) = 4096, already a multiple of 256
    with torch.device("meta"):
        model = RefactForCausalLM(load_model_config(path))
    assert tuple(model.transformer.h[0].mlp.gate_up_proj.weight.shape) == (2 * 4096, 2048)
    assert tuple(model.transformer.h[0].mlp.c_proj.weight.shape) == (2048, 4096)


def test_tiny_config_is_a_few_million_parameters():
    model = RefactForCausalLM(load_model_config("tiny"))
    assert 1_000_000 < model.num_parameters() < 10_000_000


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match="n_embed"):
        model_config({"n_embed": 3})


@pytest.mark.parametrize("n_head", [1, 2, 4, 8, 12, 32, 40])
def test_alibi_slopes_match_press_et_al(n_head):
    def get_slopes(n):  # the original ALiBi reference code
        def power_of_2(n):
            start = 2 ** (-(2 ** -(math.log2(n) - 3)))
            return [start * start**i for i in range(n)]

        if math.log2(n).is_integer():
            return power_of_2(n)
        closest = 2 ** math.floor(math.log2(n))
        return power_of_2(closest) + get_slopes(2 * closest)[0::2][: n - closest]

    torch.testing.assert_close(alibi_slopes(n_head), torch.tensor(get_slopes(n_head), dtype=torch.float32))


def test_init_follows_release():
    torch.manual_seed(0)
    cfg = tiny(n_embd=256, n_layer=8, vocab_size=4096)
    model = RefactForCausalLM(cfg)
    assert abs(model.transformer.wte.weight.std().item() - 0.02) < 0.002
    assert abs(model.transformer.h[0].attn.q.weight.std().item() - 0.02) < 0.002
    want = 0.02 / math.sqrt(2 * cfg.n_layer)
    assert abs(model.transformer.h[0].mlp.c_proj.weight.std().item() - want) < 0.1 * want
    assert torch.equal(model.ln_f.weight, torch.ones(256))
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()


def test_tied_embeddings_when_config_says_so():
    model = RefactForCausalLM(tiny(tie_word_embeddings=True))
    assert model.lm_head.weight is model.transformer.wte.weight


def _qkv(B=2, H=4, T=9, S=9, D=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, D, generator=g, dtype=dtype)
    k = torch.randn(B, 1, S, D, generator=g, dtype=dtype)
    v = torch.randn(B, 1, S, D, generator=g, dtype=dtype)
    return q, k, v


@pytest.mark.parametrize("n_head,T,S", [(4, 9, 9), (6, 1, 13), (4, 5, 12), (32, 17, 17)])
def test_backends_agree_with_reference(n_head, T, S):
    q, k, v = _qkv(H=n_head, T=T, S=S)
    slopes = alibi_slopes(n_head)
    ref = reference_attention(q, k, v, slopes)
    sdpa = attention(q, k, v, slopes, backend="sdpa")
    torch.testing.assert_close(sdpa, ref, atol=1e-5, rtol=1e-5)
    flex = attention(q, k, v, slopes, backend="flex")  # FlexAttention forward runs on CPU (eager), no backward there
    torch.testing.assert_close(flex, ref, atol=1e-5, rtol=1e-5)
    auto = attention(q, k, v, slopes, backend="auto")  # no flash-attn on CPU: sdpa
    torch.testing.assert_close(auto, ref, atol=1e-5, rtol=1e-5)


def test_reference_matches_explicit_alibi_formula():
    q, k, v = _qkv(B=1, H=2, T=4, S=4, D=8)
    slopes = alibi_slopes(2)
    out = reference_attention(q, k, v, slopes)
    for h in range(2):
        for i in range(4):
            scores = torch.stack([q[0, h, i] @ k[0, 0, j] / math.sqrt(8) - slopes[h] * (i - j) for j in range(i + 1)])
            want = torch.softmax(scores, 0) @ v[0, 0, : i + 1]
            torch.testing.assert_close(out[0, h, i], want, atol=1e-5, rtol=1e-5)


def test_padding_mask_backends_agree():
    q, k, v = _qkv(T=7, S=7)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, :3] = False  # left padding in the second row
    slopes = alibi_slopes(4)
    ref = reference_attention(q, k, v, slopes, key_padding_mask=mask)
    torch.testing.assert_close(attention(q, k, v, slopes, key_padding_mask=mask, backend="sdpa"), ref,
                               atol=1e-5, rtol=1e-5)
    assert torch.isfinite(ref).all()


def test_left_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    model = RefactForCausalLM(tiny()).eval()
    ids = torch.randint(5, 128, (1, 6))
    alone = model(ids)
    padded = torch.cat([torch.full((1, 3), 4), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 6)], dim=1).long()
    torch.testing.assert_close(model(padded, attention_mask=mask)[:, 3:], alone, atol=1e-5, rtol=1e-5)


def test_model_backends_give_same_logits_and_grads():
    torch.manual_seed(0)
    ids = torch.randint(0, 128, (2, 16))
    results = {}
    for backend in ("reference", "sdpa"):
        torch.manual_seed(1)
        model = RefactForCausalLM(tiny(attention_backend=backend))
        loss = model(ids).float().logsumexp(-1).mean()
        loss.backward()
        results[backend] = (loss.detach(), model.transformer.h[0].attn.kv.weight.grad.clone())
    torch.testing.assert_close(results["sdpa"][0], results["reference"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results["sdpa"][1], results["reference"][1], atol=1e-5, rtol=1e-4)


def test_runtime_dropout_rate():
    torch.manual_seed(0)
    model = RefactForCausalLM(tiny()).train()
    ids = torch.randint(0, 128, (2, 16))
    model.set_dropout(0.0)
    a, b = model(ids), model(ids)
    assert torch.equal(a, b)
    model.set_dropout(0.3)
    assert model.dropout_rate == 0.3
    assert all(m.dropout_p == 0.3 for m in model.modules() if hasattr(m, "dropout_p"))
    assert not torch.allclose(model(ids), model(ids))
    model.eval()
    assert torch.equal(model(ids), model(ids))  # no dropout at eval, whatever the rate
    model.train()
    model.set_dropout(0.0)
    assert torch.equal(model(ids), a)
    with pytest.raises(ValueError):
        model.set_dropout(1.5)


def test_activation_checkpointing_same_grads():
    torch.manual_seed(0)
    ids = torch.randint(0, 128, (2, 16))
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(1)
        model = RefactForCausalLM(tiny())
        model.set_activation_checkpointing(ckpt)
        model(ids).float().mean().backward()
        grads.append(model.transformer.h[1].mlp.gate_up_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_cached_and_uncached_greedy_decoding_are_identical():
    torch.manual_seed(0)
    model = RefactForCausalLM(tiny(vocab_size=64))
    prompts = [[5, 6, 7], [9, 10, 11, 12, 13, 14, 15], [20]]
    cached = generate(model, prompts, 40, stop_token_ids=())
    uncached = generate(model, prompts, 40, stop_token_ids=(), use_cache=False)
    assert cached == uncached
    assert all(len(row) == 40 for row in cached)
    # batching (left padding) gives what each prompt gives alone
    for prompt, row in zip(prompts, cached):
        assert generate(model, [prompt], 40, stop_token_ids=()) == [row]


def test_stop_tokens_and_sampling():
    torch.manual_seed(0)
    model = RefactForCausalLM(tiny(vocab_size=64))
    greedy = generate(model, [[3, 4, 5]], 30, stop_token_ids=())[0]
    stop = greedy[5]
    first = greedy.index(stop)
    assert generate(model, [[3, 4, 5]], 30, stop_token_ids=(stop,))[0] == greedy[:first]
    s1 = generate(model, [[3, 4, 5]] * 2, 20, temperature=1.0, top_p=0.9, seed=7, stop_token_ids=())
    s2 = generate(model, [[3, 4, 5]] * 2, 20, temperature=1.0, top_p=0.9, seed=7, stop_token_ids=())
    assert s1 == s2
    assert s1[0] != greedy[:20] or s1[1] != greedy[:20]
    for tiny_t in (1e-3, 1e-45, 5e-324):  # near 0 is near greedy (1e-45 overflowed logits / t to NaN probabilities)
        assert generate(model, [[3, 4, 5]], 20, temperature=tiny_t, seed=1, stop_token_ids=())[0] == greedy[:20]
    # a top_p small enough keeps only the most likely token: sampling becomes greedy
    assert generate(model, [[3, 4, 5]], 20, temperature=1.0, top_p=1e-6, seed=1, stop_token_ids=())[0] == greedy[:20]


def test_generate_rejects_overlong_requests():
    model = RefactForCausalLM(tiny(n_positions=16))
    with pytest.raises(ValueError, match="n_positions"):
        generate(model, [[1] * 10], 10)
    assert generate(model, [[1, 2]], 0) == [[]]


@pytest.mark.parametrize("option, value", [
    ("max_new_tokens", -5), ("max_new_tokens", 2.5), ("max_new_tokens", "abc"), ("max_new_tokens", None),
    ("temperature", -1.0), ("temperature", float("nan")), ("temperature", float("inf")), ("temperature", "hot"),
    ("top_p", 0.0), ("top_p", float("nan")), ("top_p", "all"), ("seed", "abc"), ("seed", 1.5), ("seed", 2**64),
    ("vocab_size", 0),
])
def test_generate_names_a_bad_option(option, value):
    """Each failed inside torch before (a negative or float size, NaN probabilities, manual_seed's type error, or its
    "Overflow when unpacking long long" naming no option) or, for a negative temperature, was silently greedy."""
    model = RefactForCausalLM(tiny(n_positions=16))
    options = {"max_new_tokens": 2, "temperature": 1.0, "seed": 0, option: value}
    with pytest.raises(ValueError, match=f"generate: {option} must be"):
        generate(model, [[1, 2]], **options)


def test_generate_refuses_a_model_whose_logits_are_not_finite():
    torch.manual_seed(0)
    model = RefactForCausalLM(tiny())
    with torch.no_grad():
        model.transformer.h[0].mlp.c_proj.weight[0, 0] = float("nan")  # a corrupt checkpoint, or an fp16 overflow
    # greedy read the NaN logits as id 0, <|endoftext|>: an empty answer (and a silent 0 in evals); sampling raised
    # multinomial's RuntimeError
    for sampling in ({}, {"temperature": 1.0, "seed": 0}):
        with pytest.raises(ValueError, match="logits hold NaN or inf at new token 0"):
            generate(model, [[3, 4, 5]], 5, **sampling)


def test_generate_refuses_prompt_ids_outside_the_embedding():
    model = RefactForCausalLM(tiny())  # a tokenizer larger than the model's: an IndexError from the embedding before
    for bad in (128, -1):
        with pytest.raises(ValueError, match=f"prompt token id {bad} is outside the model's 128 embedding rows"):
            generate(model, [[3, 4], [5, bad, 6]], 2)


def test_generate_never_produces_the_embeddings_padding_rows():
    torch.manual_seed(0)
    model = RefactForCausalLM(tiny())  # 128 embedding rows for a tokenizer of 100 ids: rows 100-127 are padding
    with torch.no_grad():
        model.lm_head.weight[100:] *= 50  # the padding rows dominate both greedy and sampled decoding
    prompts = [[3, 4, 5], [7]]
    for sampling in ({}, {"temperature": 1.0, "seed": 0}):
        unbounded = generate(model, prompts, 20, stop_token_ids=(), **sampling)
        assert any(i >= 100 for row in unbounded for i in row)  # what refact-generate produced before (decoded to "")
        bounded = generate(model, prompts, 20, stop_token_ids=(), vocab_size=100, **sampling)
        assert all(len(row) == 20 and max(row) < 100 for row in bounded)
    with pytest.raises(ValueError, match="vocab_size must be in \\[1, 128\\].*got 129"):  # a larger tokenizer's
        generate(model, prompts, 2, vocab_size=129)


@pytest.mark.gpu
def test_flash_attn_matches_reference_on_cuda():
    pytest.importorskip("flash_attn")
    q, k, v = (t.cuda().to(torch.bfloat16) for t in _qkv(H=8, T=64, S=64, D=64))
    slopes = alibi_slopes(8).cuda()
    ref = reference_attention(q.float(), k.float(), v.float(), slopes)
    out = attention(q, k, v, slopes, backend="flash")
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


@pytest.mark.gpu
def test_flex_attention_forward_and_backward_match_reference_on_cuda():
    q, k, v = (t.cuda().requires_grad_() for t in _qkv(H=8, T=128, S=128, D=64))
    slopes = alibi_slopes(8).cuda()
    out = attention(q, k, v, slopes, backend="flex")
    ref = reference_attention(q, k, v, slopes)
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=2e-3)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.sum(), (q, k, v))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=2e-3, rtol=2e-3)
