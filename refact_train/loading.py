"""Open a model from whatever a user points at: an HF directory (ours or the release) or a trainer checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch

from data_pipeline.tokenizer import RefactTokenizer, load_tokenizer
from refact_train.hf import load_hf_checkpoint


def is_hf_dir(path: str | Path) -> bool:
    return (Path(path) / "config.json").is_file()


def load_model_and_tokenizer(
    path: str | Path, tokenizer_path: str | Path | None = None, dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.nn.Module, RefactTokenizer | None]:
    """(model, tokenizer or None). The tokenizer comes from `tokenizer_path`, else from the model's own directory."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such model directory or checkpoint")
    tokenizer = None
    if is_hf_dir(p):
        model, _ = load_hf_checkpoint(p, dtype=dtype, device=device)
        if (p / "tokenizer.json").is_file():
            tokenizer = load_tokenizer(p)
    else:
        from refact_train.checkpoint import load_model_from_checkpoint

        model, tokenizer = load_model_from_checkpoint(p)
        model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    if tokenizer_path is not None:
        tokenizer = load_tokenizer(tokenizer_path)
    return model, tokenizer


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
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
