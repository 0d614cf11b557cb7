"""LoRA fine-tuning from an HF directory: only adapters train; the merged export loads in `transformers`."""
import re

import pytest
import torch

from helpers import train_inprocess
from refact_train.models import load_model_from_checkpoint


@pytest.fixture(scope="module")
def base_hf_dir(corpus_dir, tmp_path_factory):
    from refact_train.hf import save_hf_checkpoint
    from refact_train.model import RefactForCausalLM
    from refact_train.models import load_model_config
    from data_pipeline.tokenizer import load_tokenizer
    tok = load_tokenizer(corpus_dir / "shards" / "tokenizer.json")
    torch.manual_seed(0)
    model = RefactForCausalLM(load_model_config("tiny", n_embd=64, n_layer=2, n_head=2,
                                                vocab_size=tok.padded_vocab_size))
    out = tmp_path_factory.mktemp("base_hf") / "hf"
    save_hf_checkpoint(model, out, tokenizer=tok)
    return out


def test_lora_trains_only_adapters_and_exports_merged(corpus_dir, base_hf_dir, tmp_path):
    from refact_train.hf import load_hf_checkpoint
    run = tmp_path / "lora"
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={run}", f"init_from={base_hf_dir}", "lora.enabled=true",
                     "optim=adamw", "optim.lr=1e-2", "optim.warmup_steps=1", "train.max_steps=3",
                     "checkpoint.every=3", "export.final=true", "data.fim.mode=finetune", "data.fim.rate=0.9"])
    ckpt = run / "checkpoints" / "step-00000003"
    optim_state = torch.load(ckpt / "optimizer.pt", weights_only=True)["state"]
    assert optim_state and all(".lora_A." in k or ".lora_B." in k for k in optim_state)  # only adapters stepped
    sd = torch.load(ckpt / "model.pt", weights_only=True)
    base, _ = load_hf_checkpoint(base_hf_dir)
    base_sd = base.state_dict()
    for key, value in sd.items():
        if ".lora_" in key:
            continue
        name = key.removeprefix("base_model.model.").replace(".base_layer.", ".")
        assert torch.equal(value, base_sd[name]), f"frozen weight {name} changed"
    assert any(".lora_B." in k and v.abs().sum() > 0 for k, v in sd.items())  # B starts at 0: it moved

    merged, tok = load_model_from_checkpoint(run)  # what refact-export calls
    assert tok is not None and not any("lora" in k for k in merged.state_dict())
    x = torch.randint(0, 700, (2, 24))
    with torch.no_grad():
        ours = merged(x)
        assert not torch.allclose(ours, base.eval()(x), atol=1e-4)  # the adapters changed the model

    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(run / "hf" / "final", trust_remote_code=True).eval()
    with torch.no_grad():
        out = hf(x)
    logits = out.logits if hasattr(out, "logits") else out[0]
    torch.testing.assert_close(logits.float(), ours.float(), atol=1e-4, rtol=1e-4)


def test_merge_gives_peft_logits_for_embedding_and_linear_targets():
    # An adapter on the embedding (peft's lora_embedding_A/B) made refact-export stop with a StopIteration.
    from refact_train.lora import LoraConfig, apply_lora, merge_lora_state
    from refact_train.model import RefactConfig, RefactForCausalLM
    torch.manual_seed(0)
    cfg = RefactConfig(vocab_size=128, n_embd=32, n_head=2, n_layer=1, n_positions=64)
    lora = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0,
            "target_modules": ["wte", "lm_head", "q", "gate_up_proj"]}
    with_adapters = apply_lora(RefactForCausalLM(cfg), LoraConfig.from_dict(lora)).eval()
    with torch.no_grad():
        for name, p in with_adapters.named_parameters():
            if ".lora_" in name:
                p.normal_(0, 0.2)  # B starts at zero: give every adapter a delta
    merged = RefactForCausalLM(cfg).eval()
    merged.load_state_dict(merge_lora_state(with_adapters.state_dict(), lora))
    x = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(merged(x), with_adapters(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("targets, bad", [("[nosuch,q]", "['nosuch']"), ("[ln_1]", "['ln_1']"), ("[]", "empty")])
def test_lora_targets_that_name_no_adaptable_layer_stop_before_any_work(corpus_dir, tmp_path, targets, bad):
    # peft raised NoMatchingPeftModuleError (LayerNorm: "not supported") with a traceback after the model was built
    from refact_train.train_config import ConfigError
    with pytest.raises(ConfigError, match=f"lora.target_modules: {re.escape(bad)}; each names one of the model's"):
        train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path}", "lora.enabled=true",
                         f"lora.target_modules={targets}"])
    assert not tmp_path.joinpath("checkpoints").exists()


def test_a_bare_string_of_targets_is_refused_not_split_into_letters(corpus_dir, tmp_path):
    # lora.target_modules=q became the targets ('q',) by luck; =kv became ('k', 'v'): split into letters
    from refact_train.train_config import ConfigError
    with pytest.raises(ConfigError, match="lora.target_modules: expected a list, got 'kv'"):
        train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path}", "lora.enabled=true",
                         "lora.target_modules=kv"])
