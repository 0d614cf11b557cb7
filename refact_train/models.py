"""Build a RefactForCausalLM from config and load one from any source (as nanochat's checkpoint_manager does).

Sources: a trainer checkpoint of any backend (a step dir, its `checkpoints/` dir or the run dir; LoRA merged), an HF
directory of either released revision, or our own export. Dependencies point one way: model/, hf/, lora, checkpoint
-> this module -> trainer and the command-line tools.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from data_pipeline.tokenizer import RefactTokenizer, load_tokenizer
from refact_train.checkpoint import (
    CheckpointError, check_tokenizer, read_config, recorded_tokenizer, resolve_checkpoint_dir, saved_tokenizer,
)
from refact_train.hf import load_hf_checkpoint, save_hf_checkpoint
from refact_train.hf.load import exported_tokenizer
from refact_train.lora import LoraConfig, apply_lora, merge_lora_state
from refact_train.model import RefactConfig, RefactForCausalLM
from data_pipeline.config import config_dir, config_from_dict


# --- config -------------------------------------------------------------------------------------------------------
def model_config(values: dict[str, Any]) -> RefactConfig:
    """The `model` section of a training config -> RefactConfig (an unknown key is an error naming it)."""
    return config_from_dict(RefactConfig, values, "model")


def load_model_config(name_or_path: str | Path, **overrides: Any) -> RefactConfig:
    """`tiny`, `refact_1_6b` (files in configs/model/) or the path of a YAML file with RefactConfig keys."""
    path = Path(name_or_path)
    if not path.suffix:
        path = Path(config_dir()) / "model" / f"{name_or_path}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (Path(config_dir()) / "model").glob("*.yaml"))
        raise FileNotFoundError(f"model config {name_or_path!r}: no file {path}; available: {available}")
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    values.update(overrides)
    return model_config(values)


def build_model(model_cfg: dict[str, Any]) -> RefactForCausalLM:
    """A freshly initialised model of the `model` section of a training config."""
    return RefactForCausalLM(model_config(model_cfg))


def model_from_state(cfg: dict[str, Any], state: dict[str, torch.Tensor]) -> RefactForCausalLM:
    """The plain model of a training config holding `state` (a full state dict; LoRA adapters merged in)."""
    lora = cfg.get("lora") or {}
    if lora.get("enabled"):
        state = merge_lora_state(state, lora)
    model = build_model(cfg["model"])
    model.load_state_dict(state, strict=True)
    return model


# --- loading ------------------------------------------------------------------------------------------------------
def is_hf_dir(path: str | Path) -> bool:
    return (Path(path) / "config.json").is_file()


def load_model_from_checkpoint(path: str | Path, device: str = "cpu") -> tuple[RefactForCausalLM, Any]:
    """(model, tokenizer or None) from a trainer checkpoint of any backend (a step dir, `checkpoints/` or a run dir).

    Every backend writes the full state dict to model.pt; LoRA checkpoints come back merged into plain weights.
    """
    ckpt = resolve_checkpoint_dir(path)
    cfg = read_config(ckpt / "config.yaml")  # saved resolved: a `${` left in a path is a character, not a reference
    model = model_from_state(cfg, torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True))
    model.to(device).eval()
    return model, saved_tokenizer(ckpt)


def tokenizer_record(path: str | Path, own: RefactTokenizer | None = None) -> tuple[str, str] | None:
    """(sha256, file) of the tokenizer the model at `path` (an HF directory or a trainer checkpoint) was trained
    with, as recorded beside it; None when nothing is (an HF directory without tokenizer.json, an older checkpoint).
    `own`: the tokenizer already loaded from there. An export of ours records it (hf.load.EXPORT_RECORD): its
    tokenizer.json is named when it is that one, the record when not (swapped in later)."""
    p = Path(path)
    if not is_hf_dir(p):
        return (own.sha256, str(own.source)) if own is not None else recorded_tokenizer(resolve_checkpoint_dir(p))
    exported = exported_tokenizer(p)
    if own is None and (p / "tokenizer.json").is_file():
        own = load_tokenizer(p)
    if own is not None and (exported is None or exported[0] == own.sha256):
        return own.sha256, str(own.source)
    return exported


def load_model_and_tokenizer(
    path: str | Path, tokenizer_path: str | Path | None = None, dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu", allow_other_tokenizer: bool = False,
    allow_flag: str = "allow_other_tokenizer=true",
) -> tuple[RefactForCausalLM, RefactTokenizer | None]:
    """(model, tokenizer or None) from an HF directory or a trainer checkpoint. The tokenizer comes from
    `tokenizer_path`, else from the model's own directory; one other than the model was trained with is refused
    unless `allow_other_tokenizer` (`allow_flag`: how the caller's user says so). `dtype` None keeps the stored
    dtype."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such model directory or checkpoint")
    if not p.is_dir():  # "no intact checkpoint under FILE" before, for a weights or .gguf file given for its dir
        gguf = " (a .gguf file is for llama.cpp: docs/gguf.md)" if p.suffix == ".gguf" else ""
        raise ValueError(f"{p} is not a directory: give the HF directory that holds config.json and the weights, "
                         f"or a trainer checkpoint or run directory{gguf}")
    tokenizer = None
    if is_hf_dir(p):
        model, _ = load_hf_checkpoint(p, dtype=dtype, device=device)
        if (p / "tokenizer.json").is_file():
            tokenizer = load_tokenizer(p)
    else:
        try:
            model, tokenizer = load_model_from_checkpoint(p)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{p}: not an HF directory (no config.json), nor a trainer checkpoint: "
                                    f"{err}") from err
        model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    own, tokenizer = tokenizer, load_tokenizer(tokenizer_path) if tokenizer_path is not None else tokenizer
    if tokenizer is not None and tokenizer.vocab_size > model.config.vocab_size:  # ids past the embedding: IndexError
        raise ValueError(f"tokenizer {tokenizer.source} has {tokenizer.vocab_size} tokens, more than the "
                         f"{model.config.vocab_size} embedding rows of {p}: it is not this model's tokenizer")
    if tokenizer is not None:  # the same at another path is fine; an export's own tokenizer.json swapped is not
        recorded = tokenizer_record(p, own)
        if recorded is None or recorded[0] != tokenizer.sha256:
            check_tokenizer(recorded, tokenizer, str(p), allow_flag, allow_other_tokenizer)
    return model, tokenizer


def pick_device(device: str) -> str:
    """"auto": CUDA when torch sees a GPU, else the CPU. A device torch cannot use here is refused by name (it was a
    traceback from inside torch when the model moved)."""
    device = str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device)
    except RuntimeError:
        kind = None
    if kind is None or kind.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r}: use auto, cpu, cuda or cuda:N")
    if kind.type == "cuda" and (kind.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device={device}: torch sees {torch.cuda.device_count()} CUDA device(s) here; "
                         f"use device=auto or device=cpu")
    return device


def pick_dtype(dtype: str, device: str) -> torch.dtype | None:
    """"auto": the stored dtype on CPU, bf16 on CUDA."""
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else None
    if dtype not in table:
        raise ValueError(f"dtype {dtype!r}: use one of auto, {', '.join(table)}")
    return table[dtype]


# --- training and export ------------------------------------------------------------------------------------------
def init_model(model_cfg: dict[str, Any], init_from: str | None, log=print, tokenizer: RefactTokenizer | None = None,
               allow_other_tokenizer: bool = False) -> RefactForCausalLM:
    """A fresh model, or weights from `init_from` (an HF dir, or a trainer checkpoint / run dir: weights only);
    `tokenizer` (the run's) is refused if init_from was trained with another, unless `allow_other_tokenizer`."""
    if not init_from:
        return build_model(model_cfg)
    path = Path(init_from)
    if not path.exists():
        raise CheckpointError(f"init_from={init_from}: no such directory (give an HF directory, or a trainer "
                              f"checkpoint or run directory)")
    try:
        if tokenizer is not None:
            check_tokenizer(tokenizer_record(path), tokenizer, str(path), "allow_other_tokenizer=true",
                            allow_other_tokenizer, log)
        if is_hf_dir(path):
            model, _ = load_hf_checkpoint(str(path), dtype=torch.float32, device="cpu")
            log(f"[init] weights from HF directory {path}", file=sys.stderr)
            return model
        model, _ = load_model_from_checkpoint(path)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise CheckpointError(f"init_from={init_from}: {err}") from err
    log(f"[init] weights from trainer checkpoint {path}", file=sys.stderr)
    return model


def prepare_model(cfg: dict, tokenizer: Any, log=print) -> tuple[nn.Module, RefactForCausalLM]:
    """(module to train, the bare RefactForCausalLM inside it). Updates cfg["model"] to the model actually built."""
    model_cfg = dict(cfg["model"])
    if cfg["train"].get("vocab_from_tokenizer") and tokenizer is not None and not cfg.get("init_from"):
        model_cfg["vocab_size"] = int(tokenizer.padded_vocab_size)
    base = init_model(model_cfg, cfg.get("init_from"), log, tokenizer, bool(cfg.get("allow_other_tokenizer")))
    cfg["model"] = base.config.to_dict()  # the saved config must rebuild exactly this model (HF init included)
    if cfg["train"].get("activation_checkpointing"):
        base.set_activation_checkpointing(True)
    lora = LoraConfig.from_dict(cfg.get("lora") or {})
    module = apply_lora(base, lora) if lora.enabled else base
    return module, base


def export_hf(full_sd: dict, cfg: dict, tokenizer: Any, out: Path) -> None:
    """Full (possibly LoRA) state dict of a training run -> HF directory (LoRA merged)."""
    save_hf_checkpoint(model_from_state(cfg, full_sd), str(out), tokenizer=tokenizer)
    print(f"[export] HF directory {out}", file=sys.stderr)
