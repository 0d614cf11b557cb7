"""The pieces a run is assembled from: tokenizer, model (scratch / HF / checkpoint, LoRA), samples, HF export."""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn


def load_run_tokenizer(cfg: dict) -> tuple[Any, Path | None]:
    """`tokenizer=PATH` if given, else the tokenizer the shards were written with (DIR/shards/tokenizer.json)."""
    from refact_train.tokenizer import load_tokenizer
    path = cfg.get("tokenizer")
    if not path and cfg["data"].get("kind", "shards") == "shards":
        from refact_train.data import shards_dir
        path = shards_dir(cfg["data"]["path"]) / "tokenizer.json"
    if not path and cfg.get("init_from") and (Path(cfg["init_from"]) / "tokenizer.json").is_file():
        path = Path(cfg["init_from"])
    if not path:
        raise ValueError("no tokenizer: set tokenizer=PATH (a tokenizer.json or a dir holding one)")
    return load_tokenizer(path), Path(path)


def prepare_model(cfg: dict, tokenizer: Any, log=print) -> tuple[nn.Module, nn.Module]:
    """(module to train, the bare RefactForCausalLM inside it). Updates cfg["model"] to the model actually built."""
    from refact_train.build import init_model
    from refact_train.lora import LoraConfig, apply_lora

    model_cfg = dict(cfg["model"])
    if cfg["train"].get("vocab_from_tokenizer") and tokenizer is not None and not cfg.get("init_from"):
        model_cfg["vocab_size"] = int(tokenizer.padded_vocab_size)
    base = init_model(model_cfg, cfg.get("init_from"), log)
    cfg["model"] = base.config.to_dict()  # the saved config must rebuild exactly this model (HF init included)
    if tokenizer is not None and base.config.vocab_size < tokenizer.vocab_size:
        raise ValueError(f"model.vocab_size={base.config.vocab_size} < tokenizer vocab {tokenizer.vocab_size}: "
                         f"set train.vocab_from_tokenizer=true or a larger model.vocab_size")
    if cfg["train"].get("activation_checkpointing"):
        base.set_activation_checkpointing(True)
    lora = LoraConfig.from_dict(cfg.get("lora") or {})
    module = apply_lora(base, lora) if lora.enabled else base
    return module, base


def build_samples(cfg: dict, tokenizer: Any):
    dcfg = cfg["data"]
    kind = dcfg.get("kind", "shards")
    if kind == "chat":
        from refact_train.chat_sft import ChatSamples
        return ChatSamples(dcfg["path"], tokenizer, int(dcfg["seq_len"]), int(cfg["seed"]))
    if kind != "shards":
        raise ValueError(f"data.kind={kind!r}: expected shards or chat (configs/data/)")
    from refact_train.data import DataConfig, PackedSamples
    return PackedSamples(DataConfig(path=dcfg["path"], split=dcfg.get("split", "train"), seq_len=int(dcfg["seq_len"]),
                                    seed=int(cfg["seed"]), fim=dict(dcfg.get("fim") or {})), tokenizer)


def export_hf(full_sd: dict, cfg: dict, tokenizer: Any, out: Path) -> None:
    """Full (possibly LoRA) state dict -> HF directory through the lead's `save_hf_checkpoint` (LoRA merged)."""
    from refact_train.build import build_model
    from refact_train.hf import save_hf_checkpoint
    from refact_train.lora import merge_lora_state

    lora = cfg.get("lora") or {}
    sd = merge_lora_state(full_sd, lora) if lora.get("enabled") else full_sd
    model_cfg = copy.deepcopy(cfg["model"])
    model = build_model(model_cfg)
    model.load_state_dict({k: v for k, v in sd.items()}, strict=True)
    save_hf_checkpoint(model, str(out), tokenizer=tokenizer)
    print(f"[export] HF directory {out}", file=sys.stderr)
