"""Lion/AdamW parameter groups, LR schedules, early dropout."""
import math

import pytest
import torch

from refact_train.early_dropout import EarlyDropoutConfig, dropout_at
from refact_train.optim import OptimConfig, build_optimizer, lr_at, param_groups


def tiny_model():
    from refact_train.model import RefactForCausalLM
    from refact_train.models import load_model_config
    return RefactForCausalLM(load_model_config("tiny", n_embd=32, n_layer=1, n_head=2, vocab_size=128))


def test_no_weight_decay_on_norms_and_embeddings():
    model = tiny_model()
    groups = param_groups(model, OptimConfig(weight_decay=0.3))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    plain = {names[id(p)] for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.3 and groups[1]["weight_decay"] == 0.0
    assert "transformer.wte.weight" in plain and "ln_f.weight" in plain and "transformer.h.0.ln_1.weight" in plain
    assert "transformer.h.0.attn.q.weight" in decayed and "lm_head.weight" in decayed
    # configurable: an empty name list still keeps 1-D tensors out, decay_1d puts them in
    groups = param_groups(model, OptimConfig(no_decay=(), decay_1d=True))
    assert len(groups) == 1


def test_lion_betas_are_explicit_and_adamw_is_an_option():
    from lion_pytorch import Lion
    opt = build_optimizer(tiny_model(), OptimConfig(name="lion", betas=(0.9, 0.99)))
    assert isinstance(opt, Lion) and all(g["betas"] == (0.9, 0.99) for g in opt.param_groups)
    opt = build_optimizer(tiny_model(), OptimConfig(name="adamw", betas=(0.9, 0.95)))
    assert isinstance(opt, torch.optim.AdamW)
    with pytest.raises(ValueError, match="lion"):
        build_optimizer(tiny_model(), OptimConfig(name="sgd"))


def test_skipped_step_changes_nothing():
    model = tiny_model()
    opt = build_optimizer(model, OptimConfig(lr=0.1))
    model(torch.randint(0, 128, (1, 8))).sum().backward()
    before = {n: p.clone() for n, p in model.named_parameters()}
    opt.skip_next_step = True
    opt.step()
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters()) and not opt.state
    opt.step()
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_warmup_then_decay(schedule):
    cfg = OptimConfig(lr=1.0, warmup_steps=10, schedule=schedule, min_lr_ratio=0.1)
    lrs = [lr_at(s, 110, cfg) for s in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lr_at(110, 110, cfg) == pytest.approx(0.1)
    mid = lr_at(60, 110, cfg)
    assert mid == pytest.approx(0.55 if schedule == "linear" else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))


def test_early_dropout_schedule():
    cfg = EarlyDropoutConfig(rate=0.1, until_step=5)
    assert [dropout_at(s, 0, cfg) for s in range(7)] == [0.1] * 5 + [0.0] * 2
    ramp = EarlyDropoutConfig(rate=0.2, until_step=4, ramp="linear")
    assert [dropout_at(s, 0, ramp) for s in range(5)] == pytest.approx([0.2, 0.15, 0.1, 0.05, 0.0])
    by_tokens = EarlyDropoutConfig(rate=0.1, until_tokens=1000)
    assert dropout_at(99, 999, by_tokens) == 0.1 and dropout_at(0, 1000, by_tokens) == 0.0
    assert dropout_at(0, 0, EarlyDropoutConfig()) == 0.0


def test_early_dropout_switches_off_in_the_model_at_the_configured_step(corpus_dir, tmp_path):
    """The trainer applies the schedule with model.set_dropout: training is stochastic before, deterministic after."""
    from helpers import metrics, train_inprocess
    from refact_train.checkpoint import read_trainer_state
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path}", "train.max_steps=4", "checkpoint.every=2",
                     "early_dropout.rate=0.2", "early_dropout.until_step=2"])
    assert [r["dropout"] for r in metrics(tmp_path)] == [0.2, 0.2, 0.0, 0.0]
    state2 = read_trainer_state(tmp_path / "checkpoints" / "step-00000002")
    state4 = read_trainer_state(tmp_path / "checkpoints" / "step-00000004")
    assert (state2.dropout_phase, state2.dropout_rate) == ("early", 0.2)
    assert (state4.dropout_phase, state4.dropout_rate) == ("off", 0.0)


def test_activation_checkpointing_gives_the_same_losses(corpus_dir, tmp_path):
    from helpers import losses, train_inprocess
    common = [f"data.path={corpus_dir}", "train.max_steps=2", "checkpoint.every=2"]
    train_inprocess(common + [f"run_dir={tmp_path / 'plain'}"])
    train_inprocess(common + [f"run_dir={tmp_path / 'ckpt'}", "train.activation_checkpointing=true"])
    a, b = losses(tmp_path / "plain"), losses(tmp_path / "ckpt")
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-5 for k in a)
