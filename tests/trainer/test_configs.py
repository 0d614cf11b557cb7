"""Every experiment, optimizer and backend config composes, and says what the docs say it does."""
import re

import pytest
import torch

from helpers import compose
from refact_train.train_config import ConfigError, check_config


@pytest.mark.parametrize("name", ["tiny_cpu", "pretrain_refact_1_6b", "finetune_fim", "finetune_lora_repo"])
def test_experiments_compose(name):
    cfg = compose([f"experiment={name}", "data.path=/data", "init_from=/hf"])
    assert cfg["data"]["path"] == "/data" and cfg["optim"]["name"] in ("lion", "adamw")
    if name == "pretrain_refact_1_6b":
        assert (cfg["model"]["n_embd"], cfg["model"]["n_layer"], cfg["data"]["seq_len"]) == (2048, 32, 4096)
        assert cfg["dist"] == {"backend": "deepspeed", "zero_stage": 2, "bf16_params": True, "zero": {}}
        assert cfg["optim"]["betas"] == [0.9, 0.99] and cfg["early_dropout"]["rate"] > 0
        assert cfg["train"]["precision"] == "bf16"
    if name == "finetune_lora_repo":
        lora = cfg["lora"]
        assert lora["enabled"] and (lora["r"], lora["alpha"], lora["dropout"]) == (16, 32, 0.01)
        assert lora["target_modules"] == ["q", "kv", "c_proj", "gate_up_proj"]
        assert cfg["optim"]["betas"] == [0.9, 0.95] and cfg["optim"]["clip_grad"] == 0.5
        assert (cfg["train"]["global_batch"], cfg["data"]["seq_len"]) == (128, 2048)
    if name == "finetune_fim":
        assert cfg["data"]["fim"]["mode"] == "finetune"
    check_config(cfg)  # every shipped experiment passes the checks a run makes before any work


@pytest.mark.parametrize("dist,backend", [("single", "single"), ("ddp", "ddp"), ("fsdp2", "fsdp2"),
                                          ("zero1", "deepspeed"), ("zero2", "deepspeed"), ("zero3", "deepspeed")])
def test_dist_configs(dist, backend):
    assert compose([f"dist={dist}", "data.path=/d"])["dist"]["backend"] == backend


@pytest.mark.parametrize("override, said", [
    ("train.max_steps=abc", "train.max_steps: expected an integer, got 'abc'"),
    ("train.max_steps=-1", "train.max_steps must be >= 1, got -1"),
    ("train.global_batch=0", "train.global_batch must be >= 1"),  # an UnboundLocalError deep in set-up before
    ("train.micro_batch=0", "train.micro_batch must be >= 1"),  # a ZeroDivisionError before
    ("checkpoint.every=0", "checkpoint.every must be >= 1"),  # a ZeroDivisionError at the first step before
    ("train.precision=fp16", "train.precision must be one of"),
    ("optim.lr=abc", "optim.lr: expected a number, got 'abc'"),
    ("lora.r=0", "lora: r must be >= 1"),
    ("data.seq_len=0", "data.seq_len must be >= 1"),  # a ZeroDivisionError before
    ("data.fim.rate=2", "rate must be within [0, 1], got 2"),
    ("+data.shuffle=false", "data: unknown key(s) ['shuffle']"),  # silently ignored before
    ("+train.learning_rate=1", "train: unknown key(s) ['learning_rate']"),
    ("validation.fim_cuts=0", "validation.fim_cuts must be >= 1, got 0"),  # a ZeroDivisionError at step 0 before
    ("validation.every=-1", "validation.every must be >= 0"),  # no validation, silently, before
    ("validation.fim_max_new_tokens=-3", "validation.fim_max_new_tokens must be >= 1"),  # 1 token, silently
    ("optim.lr=-1", "optim.lr must be > 0 and finite, got -1"),  # Lion's bare AssertionError before
    ("optim.lr=nan", "optim.lr must be > 0 and finite, got nan"),  # trained silently with NaN updates
    ("optim.betas=[0.9,1.0]", "optim.betas must be two numbers in [0, 1), got [0.9, 1.0]"),  # ran silently
    ("optim.betas=[1.5,0.9]", "optim.betas must be two numbers in [0, 1)"),  # Lion's AssertionError
    ("optim.betas=[0.9]", "optim.betas must be two numbers in [0, 1), got [0.9]"),  # a traceback at the first step
    ("optim.weight_decay=-0.1", "optim.weight_decay must be >= 0 and finite"),  # ran silently
    ("optim.clip_grad=nan", "optim.clip_grad must be >= 0 and finite"),  # no clipping, silently
    ("optim.min_lr_ratio=-1", "optim.min_lr_ratio must be within [0, 1], got -1"),  # a negative lr at the end
    ("optim.warmup_steps=-5", "optim.warmup_steps must be >= 0, got -5"),  # ran silently
    ("optim.schedule=cosinus", "optim.schedule must be one of ('cosine', 'linear', 'constant')"),  # after step 1
    ("optim.name=sgd", "optim.name must be one of ('lion', 'adamw'), got 'sgd'"),  # after the model was built
    ("optim.no_decay=norm", "optim.no_decay: expected a list, got 'norm'"),  # split into letters n, o, r, m
    ("optim.no_decay=[1,2]", "optim.no_decay must be a list of parameter-name substrings"),  # TypeError traceback
    # sections and keys that were not checked at all
    ("+max_steps=5", "config: unknown key(s) ['max_steps']"),  # ignored silently: train.max_steps was meant
    ("seed=abc", "config.seed: expected an integer, got 'abc'"),  # named data.seed before
    ("resume=maybe", "resume=maybe: neither auto, never nor an existing path"),  # FileNotFoundError traceback
    ("resume=true", "resume=True: neither auto, never nor an existing path"),  # TypeError traceback
    ("run_dir=null", "config.run_dir: expected a string, got None"),  # TypeError traceback
    ("metrics.wandb=maybe", "metrics.wandb: expected true or false, got 'maybe'"),  # wandb on, silently
    ("metrics.wandb_mode=ofline", "metrics.wandb_mode must be one of auto, online, offline, disabled"),  # wandb off
    ("+metrics.foo=1", "metrics: unknown key(s) ['foo']"),
    ("metrics.peak_flops=-5", "metrics.peak_flops must be > 0"),  # a negative MFU, silently
    ("export.every=-1", "export.every must be >= 0 (0: never), got -1"),  # an HF export at every checkpoint
    ("+export.evry=5", "export: unknown key(s) ['evry']"),  # no export, silently
    ("dist.backend=nope", "dist.backend must be one of ('single', 'ddp', 'fsdp2', 'deepspeed')"),  # a traceback
    ("dist=zero2 dist.zero_stage=7", "dist.zero_stage must be 1, 2 or 3, got 7"),  # DeepSpeed's traceback
    ("+dist.foo=1", "dist: unknown key(s) ['foo']"),
    # the model section: a traceback (exit 1) once the backend and the tokenizer were set up, before
    ("model.n_embd=abc", "model.n_embd: expected an integer, got 'abc'"),
    ("+model.n_heads=8", "model: unknown key(s) ['n_heads']"),
    ("model.tie_word_embeddings=no", "model.tie_word_embeddings: expected true or false, got 'no'"),
    ("model.n_head=3", "model config: n_embd 256 is not divisible by n_head 3"),
    # early_dropout: a bad ramp stopped the run at its first step, a rate of 1.5 when the model was built
    ("early_dropout.rate=0.1 early_dropout.until_step=5 early_dropout.ramp=cubic",
     "early_dropout.ramp must be none or linear, got 'cubic'"),
    ("early_dropout.rate=1.5 early_dropout.until_step=5", "early_dropout.rate must be in [0, 1), got 1.5"),
    ("early_dropout.until_tokens=-1", "early_dropout.until_step and until_tokens must be >= 0"),  # silently off
])
def test_a_bad_value_is_refused_before_any_work(override, said):
    with pytest.raises(ConfigError, match=re.escape(said)):
        check_config(compose(["data.path=/d", *override.split()]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a GPU")
def test_cuda_without_a_gpu_is_refused_before_any_work():
    with pytest.raises(ConfigError, match="train.device=cuda: torch sees no CUDA device here"):
        check_config(compose(["data.path=/d", "train.device=cuda"]))  # torch's AttributeError traceback before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_more_processes_than_gpus_is_refused_before_any_work(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count()))
    with pytest.raises(ConfigError, match=f"LOCAL_RANK={torch.cuda.device_count()}, but torch sees"):
        check_config(compose(["data.path=/d", "train.device=auto"]))


def test_init_from_that_cannot_be_used_is_one_clear_error(tmp_path):
    from refact_train.checkpoint import CheckpointError
    from refact_train.models import init_model
    with pytest.raises(CheckpointError, match="init_from=.*nope: no such directory"):
        init_model({}, str(tmp_path / "nope"))
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        init_model({}, str(tmp_path / "hf"))


def test_a_warmup_longer_than_the_run_is_said(corpus_dir, tmp_path, capsys):
    from helpers import train_inprocess
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path}", "train.max_steps=2", "optim.warmup_steps=5"])
    assert "optim.warmup_steps=5 > train.max_steps=2: the whole run is warmup" in capsys.readouterr().err


def test_an_experiment_that_does_not_exist_is_refused():
    """`experiment=tiny_CPU` (a typo) ran the default config silently: the group was `optional`."""
    from hydra.errors import MissingConfigException
    with pytest.raises(MissingConfigException, match="Could not find 'experiment/tiny_CPU'"):
        compose(["experiment=tiny_CPU", "data.path=/d"])
    assert compose(["data.path=/d"])["run_dir"] == "runs/default"  # no experiment at all is still fine
