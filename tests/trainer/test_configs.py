"""Every experiment, optimizer and backend config composes, and says what the docs say it does."""
import pytest

from helpers import compose


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


@pytest.mark.parametrize("dist,backend", [("single", "single"), ("ddp", "ddp"), ("fsdp2", "fsdp2"),
                                          ("zero1", "deepspeed"), ("zero2", "deepspeed"), ("zero3", "deepspeed")])
def test_dist_configs(dist, backend):
    assert compose([f"dist={dist}", "data.path=/d"])["dist"]["backend"] == backend
