import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from refact_train.hf import detect_revision, load_hf_checkpoint, save_hf_checkpoint, to_earlier_names
from refact_train.model import RefactConfig, RefactForCausalLM, generate


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=128, n_embd=64, n_head=4, n_layer=2, n_positions=128)
    cfg.update(kw)
    return RefactForCausalLM(RefactConfig(**cfg)).eval()


def release_config(cfg: RefactConfig) -> dict:
    """config.json as the release writes it (no tie_word_embeddings, no ln_f_bias keys)."""
    return {
        "architectures": ["GPTRefactForCausalLM"], "model_type": "gpt_refact", "vocab_size": cfg.vocab_size,
        "n_embd": cfg.n_embd, "n_head": cfg.n_head, "n_layer": cfg.n_layer, "n_positions": cfg.n_positions,
        "n_inner": None, "multi_query": True, "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
        "eos_token_id": 0, "use_cache": True, "attention_softmax_in_fp32": True,
        "scale_attention_softmax_in_fp32": True, "attention_bias_in_fp32": True, "torch_dtype": "float32",
    }


def assert_same_tensors(a: RefactForCausalLM, b: RefactForCausalLM):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def test_export_loads_in_transformers_with_same_logits(tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_model()
    out = save_hf_checkpoint(model, tmp_path / "export")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "configuration_gpt_refact.py", "modeling_gpt_refact.py", "model.safetensors",
            "generation_config.json"} <= names
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "gpt_refact" and "AutoModelForCausalLM" in cfg["auto_map"]
    hf = AutoModelForCausalLM.from_pretrained(str(out), trust_remote_code=True).eval()
    assert set(hf.state_dict()) == set(model.state_dict())
    ids = torch.randint(0, 128, (3, 33), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (hf(ids).logits - model(ids)).abs().max().item()
    assert diff < 1e-5
    # padded batches agree too
    mask = torch.ones_like(ids)
    mask[1, :7] = 0
    with torch.no_grad():
        diff = (hf(ids, attention_mask=mask).logits - model(ids, attention_mask=mask)).abs()[mask.bool()].max().item()
    assert diff < 1e-5


def test_transformers_generate_matches_ours(tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_model(seed=3)
    save_hf_checkpoint(model, tmp_path / "export")
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "export"), trust_remote_code=True).eval()
    prompt = [5, 17, 42, 9]
    out = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None,
                      attention_mask=torch.ones(1, 4, dtype=torch.long))
    assert out[0, 4:].tolist() == generate(model, [prompt], 12, stop_token_ids=())[0]


def test_import_of_export_is_bitwise_identical(tmp_path):
    model = tiny_model()
    save_hf_checkpoint(model, tmp_path / "e")
    again, cfg = load_hf_checkpoint(tmp_path / "e")
    assert_same_tensors(model, again)
    assert cfg == model.config


def test_bf16_export_round_trip(tmp_path):
    model = tiny_model().to(torch.bfloat16)
    save_hf_checkpoint(model, tmp_path / "e")
    assert json.loads((tmp_path / "e" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    again, _ = load_hf_checkpoint(tmp_path / "e")
    assert_same_tensors(model, again)


def test_sharded_export(tmp_path):
    model = tiny_model()
    save_hf_checkpoint(model, tmp_path / "e", max_shard_bytes=40_000)
    index = json.loads((tmp_path / "e" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    assert not (tmp_path / "e" / "model.safetensors").exists()
    again, _ = load_hf_checkpoint(tmp_path / "e")
    assert_same_tensors(model, again)


def write_earlier_revision(model, directory, *, ln_f_bias=None, as_bin=False):
    """A checkpoint in the earlier released layout: attn.k / attn.v, mlp.linear_1 / mlp.linear_3."""
    directory.mkdir(parents=True)
    cfg = model.config
    state = to_earlier_names(model.state_dict(), cfg.head_dim, cfg.mlp_hidden)
    if ln_f_bias is not None:
        state["ln_f.bias"] = ln_f_bias
    (directory / "config.json").write_text(json.dumps(release_config(cfg)))
    if as_bin:
        torch.save(state, directory / "pytorch_model.bin")
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"))
    return state


def test_earlier_revision_from_pytorch_bin(tmp_path):
    model = tiny_model()
    state = write_earlier_revision(model, tmp_path / "old", as_bin=True)
    assert detect_revision(state) == "split"
    loaded, cfg = load_hf_checkpoint(tmp_path / "old")
    assert not cfg.tie_word_embeddings and not cfg.ln_f_bias
    assert_same_tensors(model, loaded)


def test_earlier_revision_with_ln_f_bias_keeps_the_bias(tmp_path):
    model = tiny_model()
    bias = torch.randn(64)
    write_earlier_revision(model, tmp_path / "old", ln_f_bias=bias)
    loaded, cfg = load_hf_checkpoint(tmp_path / "old")
    assert cfg.ln_f_bias and torch.equal(loaded.ln_f.bias, bias)
    ids = torch.randint(0, 128, (1, 10))
    expected = model(ids) + (bias @ model.lm_head.weight.T)  # ln_f bias enters the logits linearly
    torch.testing.assert_close(loaded(ids), expected, atol=1e-5, rtol=1e-5)
    # re-exported in the current revision, transformers loads it with the bias
    from transformers import AutoModelForCausalLM

    save_hf_checkpoint(loaded, tmp_path / "new")
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "new"), trust_remote_code=True).eval()
    with torch.no_grad():
        assert (hf(ids).logits - loaded(ids)).abs().max() < 1e-5


def test_current_revision_release_layout(tmp_path):
    model = tiny_model()
    d = tmp_path / "cur"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(release_config(model.config)))
    save_file(model.state_dict(), str(d / "model.safetensors"))
    loaded, _ = load_hf_checkpoint(d)
    assert_same_tensors(model, loaded)


def test_release_config_with_n_inner_set_loads(tmp_path):
    """n_inner written out in config.json (the "4*E" width, 384 for n_embd 96) means the same MLP as null (256)."""
    model = tiny_model(n_embd=96)
    assert model.config.mlp_hidden == 256
    d = tmp_path / "cur"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({**release_config(model.config), "n_inner": 4 * 96}))
    save_file(model.state_dict(), str(d / "model.safetensors"))
    loaded, cfg = load_hf_checkpoint(d)
    assert cfg.n_inner == 384 and cfg.mlp_hidden == 256
    assert_same_tensors(model, loaded)


def test_export_with_n_inner_set_is_read_alike_by_the_modeling_code(tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_model(n_inner=600)  # int(2 * 600 / 3) = 400 -> 512
    assert model.transformer.h[0].mlp.hidden == 512
    out = save_hf_checkpoint(model, tmp_path / "e")
    assert json.loads((out / "config.json").read_text())["n_inner"] == 600
    hf = AutoModelForCausalLM.from_pretrained(str(out), trust_remote_code=True).eval()
    assert hf.transformer.h[0].mlp.hidden == 512
    ids = torch.randint(0, 128, (2, 17), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (hf(ids).logits - model(ids)).abs().max().item() < 1e-5
    again, cfg = load_hf_checkpoint(out)
    assert cfg == model.config
    assert_same_tensors(model, again)


def test_wrong_shape_names_key_and_shapes(tmp_path):
    model = tiny_model()
    d = tmp_path / "bad"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(release_config(model.config)))
    state = dict(model.state_dict())
    state["transformer.h.1.attn.q.weight"] = torch.zeros(64, 32)
    del state["transformer.h.0.ln_2.weight"]
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(ValueError) as err:
        load_hf_checkpoint(d)
    msg = str(err.value)
    assert "transformer.h.1.attn.q.weight: expected shape (64, 64), found (64, 32)" in msg
    assert "missing transformer.h.0.ln_2.weight (expected shape (64,))" in msg


def test_half_of_a_split_pair_is_named(tmp_path):
    model = tiny_model()
    d = tmp_path / "old"
    state = write_earlier_revision(model, d)
    del state["transformer.h.1.attn.v.weight"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(d / "model.safetensors"))
    with pytest.raises(ValueError, match="attn.v.weight"):  # a KeyError before: refact-generate/eval tracebacks
        load_hf_checkpoint(d)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_with_code_is_refused(tmp_path):
    d = tmp_path / "evil"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(release_config(tiny_model().config)))
    with open(d / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": _Evil()}, f)
    with pytest.raises(ValueError, match="tensors-only"):
        load_hf_checkpoint(d)


def test_tied_embeddings_round_trip(tmp_path):
    model = tiny_model(tie_word_embeddings=True)
    save_hf_checkpoint(model, tmp_path / "t")
    loaded, cfg = load_hf_checkpoint(tmp_path / "t")
    assert cfg.tie_word_embeddings and loaded.lm_head.weight is loaded.transformer.wte.weight
    assert_same_tensors(model, loaded)


def test_export_with_tokenizer_loads_in_autotokenizer(tmp_path):
    from transformers import AutoTokenizer

    from data_pipeline.tokenizer import train_bpe

    tok = train_bpe(["def add(a, b):\n    return a + b\n"] * 50, vocab_size=300)
    model = tiny_model(vocab_size=tok.padded_vocab_size)
    save_hf_checkpoint(model, tmp_path / "e", tokenizer=tok)
    hf_tok = AutoTokenizer.from_pretrained(str(tmp_path / "e"))
    assert hf_tok.decode(tok.encode("return a + b")) == "return a + b"


def test_a_tied_config_over_a_trained_head_is_refused_not_dropped(tmp_path):
    model = tiny_model()  # untied: lm_head differs from the embedding
    save_hf_checkpoint(model, tmp_path / "u")
    config = json.loads((tmp_path / "u" / "config.json").read_text())
    (tmp_path / "u" / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    with pytest.raises(ValueError, match="holds an lm_head.weight that differs from transformer.wte.weight"):
        load_hf_checkpoint(tmp_path / "u")  # loaded with the embedding as head before, the trained head dropped


@pytest.mark.parametrize("key, value, said", [
    ("n_layer", "2", "config.json.n_layer: expected an integer, got '2'"),  # a TypeError before
    ("n_embd", 64.0, "config.json.n_embd: expected an integer, got 64.0"),  # a TypeError in torch.empty before
    ("tie_word_embeddings", "false", "config.json.tie_word_embeddings: expected true or false"),  # read as true before
    ("layer_norm_epsilon", "x", "config.json.layer_norm_epsilon: expected a number"),  # loaded, failed at forward
])
def test_config_values_of_the_wrong_type_are_named(tmp_path, key, value, said):
    save_hf_checkpoint(tiny_model(), tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(ValueError, match=said):
        load_hf_checkpoint(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("[1, 2]")  # an AttributeError before
    with pytest.raises(ValueError, match="config.json: not a model config"):
        load_hf_checkpoint(tmp_path / "m")
