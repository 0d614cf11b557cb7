"""GGUF export (refact_train/hf/gguf.py): exactness of the centring, every tensor and key read back, errors.

The run against llama.cpp itself is tests/hf/test_gguf_llama_cpp.py (slow: it builds llama.cpp).
"""
import json
import math

import gguf
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from data_pipeline.tokenizer import chat_prompt_ids
from data_pipeline.tokenizer import SPECIAL_TOKENS, train_bpe
from refact_train.hf.gguf import (CHAT_TEMPLATE, GGUFExportError, centre_residual_writes, pre_tokenizer_type,
                                  write_gguf)
from refact_train.model import RefactConfig, RefactForCausalLM, alibi_slopes

CODE = ["def add(a, b):\n    return a + b  # 12345\n", "for (int i = 0; i < n; ++i) { s += x[i]; }\n",
        "fn main() { println!(\"héllo, 世界\"); }\n"] * 40


@pytest.fixture(scope="module")
def tok():
    return train_bpe(CODE, vocab_size=400)


def random_model(vocab_size, seed=0, n_head=6, **kw):
    """Random weights everywhere, norm gains included, so a wrong or missing transform shows in the logits."""
    torch.manual_seed(seed)
    cfg = RefactConfig(vocab_size=vocab_size, n_embd=96, n_head=n_head, n_layer=2, n_positions=128,
                       attention_backend="reference", **kw)
    model = RefactForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            else:
                p.normal_(0.3, 0.5)  # a mean far from zero: the centring has real work to do
    return model


def rmsnorm_copy(model, state):
    """The same architecture with every LayerNorm replaced by RMSNorm (llama.cpp's refact graph) and `state` loaded."""
    copy = RefactForCausalLM(model.config).to(next(model.parameters()).dtype).eval()
    if model.config.tie_word_embeddings:  # the GGUF stores the head on its own: untie, keep the uncentred head
        copy.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    copy.load_state_dict(state, strict=False)
    eps = model.config.layer_norm_epsilon
    for block in copy.transformer.h:
        for attr in ("ln_1", "ln_2"):
            rms = torch.nn.RMSNorm(model.config.n_embd, eps=eps).to(getattr(block, attr).weight.dtype)
            rms.weight.data.copy_(getattr(block, attr).weight.data)
            setattr(block, attr, rms)
    rms = torch.nn.RMSNorm(model.config.n_embd, eps=eps).to(copy.ln_f.weight.dtype)
    rms.weight.data.copy_(copy.ln_f.weight.data)
    copy.ln_f = rms
    return copy


@pytest.mark.parametrize("tied", [False, True])
def test_centred_model_under_rmsnorm_gives_the_original_logits_in_float64(tied):
    model = random_model(128, tie_word_embeddings=tied).double()
    ids = torch.randint(0, 128, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(ids)
        centred = rmsnorm_copy(model, centre_residual_writes(model.state_dict()))(ids)
        naive = rmsnorm_copy(model, dict(model.state_dict()))(ids)  # what a plain conversion computes
    scale = want.abs().max().item()
    assert (centred - want).abs().max().item() < 1e-12 * scale
    assert (naive - want).abs().max().item() > 1e-2 * scale  # without the centring RMSNorm is another model


def llama_cpp_slopes(n_head: int, max_bias: float = 8.0) -> np.ndarray:
    """ggml's ALiBi slopes (ggml-cpu ops.cpp, soft_max and flash_attn_ext) in float32, as llama.cpp computes them."""
    n_log2 = 1 << int(math.floor(math.log2(n_head)))
    m0 = np.float32(2.0) ** np.float32(-max_bias / n_log2)
    m1 = np.float32(2.0) ** np.float32(-(max_bias / 2.0) / n_log2)
    return np.array([m0 ** np.float32(h + 1) if h < n_log2 else m1 ** np.float32(2 * (h - n_log2) + 1)
                     for h in range(n_head)], dtype=np.float32)


def test_alibi_slopes_equal_llama_cpps_for_any_head_count():
    worst = 0.0
    for n_head in range(1, 65):  # 3, 5, 6, 7, 12, 20, 24, 48 ... are not powers of two
        ours = alibi_slopes(n_head).numpy()
        theirs = llama_cpp_slopes(n_head)
        worst = max(worst, float(np.max(np.abs(ours / theirs - 1))))
    # Same formula; llama.cpp raises a rounded float32 base to the power h, so the last bits can differ.
    assert worst < 1e-6  # measured: 4.8e-7 (n_head 32), a few float32 ulps


def reference_refact_graph(reader: gguf.GGUFReader, ids: list[int]) -> torch.Tensor:
    """llama.cpp's refact graph (src/models/refact.cpp: RMSNorm, ALiBi max bias 8, MQA, SwiGLU) in float64 torch,
    on the tensors and keys read back from the file."""
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
    t = {x.name: torch.from_numpy(gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float64))
         for x in reader.tensors}
    n_head, eps = fields["refact.attention.head_count"], fields["refact.attention.layer_norm_rms_epsilon"]

    def rms(x, w):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    x = t["token_embd.weight"][ids]
    T, D = x.shape
    pos = torch.arange(T)
    slopes = torch.from_numpy(llama_cpp_slopes(n_head, fields["refact.attention.max_alibi_bias"])).double()
    bias = -slopes[:, None, None] * (pos[:, None] - pos[None, :]).abs()
    bias = bias.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
    for i in range(fields["refact.block_count"]):
        b = lambda n: t[f"blk.{i}.{n}.weight"]  # noqa: E731
        h = rms(x, b("attn_norm"))
        q = (h @ b("attn_q").T).view(T, n_head, -1).transpose(0, 1)
        k, v = h @ b("attn_k").T, h @ b("attn_v").T
        probs = torch.softmax(q @ k.T / math.sqrt(q.shape[-1]) + bias, dim=-1)
        x = x + (probs @ v).transpose(0, 1).reshape(T, D) @ b("attn_output").T
        h = rms(x, b("ffn_norm"))
        x = x + (F.silu(h @ b("ffn_gate").T) * (h @ b("ffn_up").T)) @ b("ffn_down").T
    return rms(x, t["output_norm.weight"]) @ t["output.weight"].T


@pytest.mark.parametrize("tied", [False, True])
def test_f32_file_computed_as_llama_cpp_does_gives_our_logits(tmp_path, tok, tied):
    model = random_model(tok.padded_vocab_size, seed=1, tie_word_embeddings=tied)
    write_gguf(model, tok, tmp_path / "m.gguf", "f32")
    ids = tok.encode(CODE[2])
    got = reference_refact_graph(gguf.GGUFReader(tmp_path / "m.gguf"), ids)
    with torch.no_grad():
        want = model.double()(torch.tensor([ids]))[0]
    # the file holds float32 weights: float32 rounding of the centred weights is the only difference
    assert (got - want).abs().max().item() < 1e-5 * want.abs().max().item()


def expected_tensors(model):
    """GGUF name -> float32 tensor the file must hold, built independently of the exporter's own mapping."""
    cfg, s = model.config, centre_residual_writes({k: v.double() for k, v in model.state_dict().items()})
    s["lm_head.weight"] = model.lm_head.weight.detach().double()
    out = {"token_embd.weight": s["transformer.wte.weight"], "output_norm.weight": s["ln_f.weight"],
           "output.weight": s["lm_head.weight"]}
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        kv, gu = s[p + "attn.kv.weight"], s[p + "mlp.gate_up_proj.weight"]
        out.update({f"blk.{i}.attn_norm.weight": s[p + "ln_1.weight"], f"blk.{i}.attn_q.weight": s[p + "attn.q.weight"],
                    f"blk.{i}.attn_k.weight": kv[:cfg.head_dim], f"blk.{i}.attn_v.weight": kv[cfg.head_dim:],
                    f"blk.{i}.attn_output.weight": s[p + "attn.c_proj.weight"],
                    f"blk.{i}.ffn_norm.weight": s[p + "ln_2.weight"],
                    f"blk.{i}.ffn_gate.weight": gu[:cfg.mlp_hidden], f"blk.{i}.ffn_up.weight": gu[cfg.mlp_hidden:],
                    f"blk.{i}.ffn_down.weight": s[p + "mlp.c_proj.weight"]})
    return {k: v.float() for k, v in out.items()}


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16", "q8_0"])
def test_reader_gives_back_every_tensor_and_key(tmp_path, tok, dtype):
    model = random_model(tok.padded_vocab_size, seed=2)
    result = write_gguf(model, tok, tmp_path / f"m-{dtype}.gguf", dtype)
    reader = gguf.GGUFReader(tmp_path / f"m-{dtype}.gguf")
    want = expected_tensors(model)
    assert {t.name for t in reader.tensors} == set(want) and result.n_tensors == len(want)
    for t in reader.tensors:
        ref = want[t.name]
        got = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32))
        assert tuple(got.shape) == tuple(ref.shape), t.name
        if ref.dim() == 1 or dtype == "f32":  # norms stay f32: bit for bit
            assert t.tensor_type == gguf.GGMLQuantizationType.F32 and torch.equal(got, ref), t.name
        elif dtype == "f16":
            assert torch.equal(got, ref.half().float()), t.name
        elif dtype == "bf16":
            assert torch.equal(got, ref.bfloat16().float()), t.name
        else:  # q8_0: per block of 32, half a step of d = max|block| / 127, plus d's own f16 rounding (127 * 2^-11 d)
            step = ref.view(ref.shape[0], -1, 32).abs().amax(-1, keepdim=True) / 127
            err = (got - ref).view(ref.shape[0], -1, 32).abs()
            assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0 and bool((err <= step * 0.57 + 1e-6).all())
    f = {k: v.contents() for k, v in reader.fields.items()}
    cfg = model.config
    assert f["general.architecture"] == "refact"
    assert (f["refact.embedding_length"], f["refact.block_count"], f["refact.attention.head_count"],
            f["refact.attention.head_count_kv"], f["refact.feed_forward_length"], f["refact.context_length"]) == \
        (cfg.n_embd, cfg.n_layer, cfg.n_head, 1, cfg.mlp_hidden, cfg.n_positions)
    assert f["refact.attention.layer_norm_rms_epsilon"] == pytest.approx(cfg.layer_norm_epsilon, rel=1e-6)
    vocab = tok.tokenizer.get_vocab(with_added_tokens=True)
    tokens = f["tokenizer.ggml.tokens"]
    assert len(tokens) == cfg.vocab_size and all(tokens[i] == t for t, i in vocab.items())
    types = f["tokenizer.ggml.token_type"]
    assert [types[i] for i in range(19)] == [gguf.TokenType.CONTROL] * 19 and tokens[:19] == list(SPECIAL_TOKENS)
    assert types[len(vocab)] == gguf.TokenType.UNUSED and types[100] == gguf.TokenType.NORMAL
    merges = [" ".join(m) for m in json.loads(tok.tokenizer.to_str())["model"]["merges"]]
    assert f["tokenizer.ggml.merges"] == merges and f["tokenizer.ggml.model"] == "gpt2"
    assert f["tokenizer.ggml.pre"] == "gpt-2"
    ids = {k.removeprefix("tokenizer.ggml."): f[k] for k in f if k.endswith("token_id")}
    assert ids == {"bos_token_id": 0, "eos_token_id": 0, "eot_token_id": 0, "eom_token_id": 14, "padding_token_id": 4,
                   "fim_pre_token_id": 1, "fim_suf_token_id": 3, "fim_mid_token_id": 2, "fim_pad_token_id": 4}
    assert f["tokenizer.ggml.add_bos_token"] is False and f["tokenizer.chat_template"] == CHAT_TEMPLATE


def test_q8_0_keeps_rows_not_a_multiple_of_32_in_f16(tmp_path, tok):
    # The release's MLP width is a multiple of 256, so rows that q8_0's 32-blocks cannot cover come from n_embd:
    # with n_embd 100 every matrix that reads the residual stream stays f16, ffn_down (rows of 512) is quantised.
    torch.manual_seed(0)
    model = RefactForCausalLM(RefactConfig(vocab_size=tok.padded_vocab_size, n_embd=100, n_head=4, n_layer=2,
                                           n_positions=128, attention_backend="reference")).eval()
    result = write_gguf(model, tok, tmp_path / "m.gguf", "q8_0")
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(tmp_path / "m.gguf").tensors}
    assert types["blk.0.ffn_down.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.ffn_up.weight"] == gguf.GGMLQuantizationType.F16
    f16 = {name for name, t in types.items() if t == gguf.GGMLQuantizationType.F16}
    assert set(result.kept_f16) == f16 and "blk.1.attn_q.weight" in f16 and "output.weight" in f16


def test_pre_tokenizer_types():
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    assert pre_tokenizer_type(byte_level) == "gpt-2"
    release = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    assert pre_tokenizer_type(release) == "refact"
    for other in ({"type": "Metaspace"}, dict(byte_level, add_prefix_space=True),
                  {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": False}, byte_level]}):
        with pytest.raises(GGUFExportError, match="no llama.cpp equivalent"):
            pre_tokenizer_type(other)


def test_chat_template_renders_the_release_chat_format(tok):
    import jinja2

    messages = [{"role": "system", "content": "You are a programming assistant"},
                {"role": "user", "content": "add two numbers"}]
    text = jinja2.Environment().from_string(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=True)
    ids = []
    for i, piece in enumerate(text.split("<empty_output>")):
        ids += ([tok.empty_output_id] if i else []) + tok.encode(piece)
    assert ids == chat_prompt_ids(tok, messages)


def test_errors_name_the_problem_and_the_fix(tmp_path, tok):
    model = random_model(tok.padded_vocab_size)
    with pytest.raises(GGUFExportError, match="q4_0.*f32, f16, bf16, q8_0"):
        write_gguf(model, tok, tmp_path / "m.gguf", "q4_0")
    with pytest.raises(GGUFExportError, match="ends in .gguf"):
        write_gguf(model, tok, tmp_path / "m", "f16")
    with pytest.raises(GGUFExportError, match="--tokenizer"):
        write_gguf(model, None, tmp_path / "m.gguf", "f16")
    small = random_model(256)
    with pytest.raises(GGUFExportError, match="embedding has 256 rows"):
        write_gguf(small, tok, tmp_path / "m.gguf", "f16")
    # a byte-level BPE without the Refact special tokens: no FIM ids for llama.cpp's /infill
    plain = Tokenizer(models.BPE())
    plain.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    plain.train_from_iterator(CODE, trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    with pytest.raises(GGUFExportError, match="<fim_prefix>.*FIM tokens"):
        write_gguf(model, plain, tmp_path / "m.gguf", "f16")
    # ln_f with a bias (one released revision): refused unless dropped on purpose
    biased = random_model(tok.padded_vocab_size, ln_f_bias=True)
    with pytest.raises(GGUFExportError, match="--drop-ln-f-bias"):
        write_gguf(biased, tok, tmp_path / "m.gguf", "f16")
    assert "ln_f.bias DROPPED" in write_gguf(biased, tok, tmp_path / "m.gguf", "f16", drop_ln_f_bias=True).summary()
    assert not list(tmp_path.glob(".*tmp*"))  # failed writes leave no temporary file


def test_a_tokenizer_whose_ids_do_not_fit_one_token_per_row_is_refused(tmp_path, tok):
    # Written before: a token that shares its id with another was missing from the GGUF; one whose id is past the
    # embedding rows was dropped (llama.cpp would tokenize text differently from the model's tokenizer).
    model = random_model(tok.padded_vocab_size)
    spec = json.loads(tok.tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    last = max(vocab, key=vocab.get)
    for new_id, said in ((vocab["def"], f"tokens .* share id {vocab['def']}"),
                         (tok.padded_vocab_size + 3, f"has id {tok.padded_vocab_size + 3}, beyond the model's "
                                                     f"{tok.padded_vocab_size} embedding rows")):
        vocab[last] = new_id
        with pytest.raises(GGUFExportError, match=said):
            write_gguf(model, Tokenizer.from_str(json.dumps(spec)), tmp_path / "m.gguf", "f32")
    (tmp_path / "d.gguf").mkdir()  # an IsADirectoryError from the final rename before
    with pytest.raises(GGUFExportError, match="d.gguf: is a directory"):
        write_gguf(model, tok, tmp_path / "d.gguf", "f32")
    assert not list(tmp_path.glob(".*tmp*"))
