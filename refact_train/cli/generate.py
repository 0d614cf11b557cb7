"""refact-generate model=DIR prompt=... mode=fim|chat|plain: complete one prompt from an HF directory or checkpoint."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from data_pipeline.tokenizer import chat_prompt_ids
from data_pipeline.fim import format_fim_prompt
from refact_train.model import generate
from refact_train.models import load_model_and_tokenizer, pick_device, pick_dtype
from data_pipeline.config import config_dir, config_from_dict


@dataclass
class GenerateOptions:
    """configs/generate/generate.yaml, typed: Hydra reads prompt=42 as a number (quote it: "prompt='42'") and
    prompt=null as null, which failed deep in the tokenizer or pathlib; system=null was sent as the text "None"."""
    model: str
    tokenizer: str | None = None
    allow_other_tokenizer: bool = False
    mode: str = "plain"
    prompt: str = ""
    fim_marker: str = "<FILL>"
    prefix: str | None = None
    suffix: str | None = None
    fim_order: str = "psm"
    spm_variant: str = "served"
    system: str = ""
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    device: str = "auto"
    dtype: str = "auto"


def options(cfg: DictConfig) -> GenerateOptions:
    if OmegaConf.is_missing(cfg, "model"):
        raise ValueError("model= is required: an HF directory or a trainer checkpoint (run directory or step)")
    opts = config_from_dict(GenerateOptions, OmegaConf.to_container(cfg, resolve=True), "config")
    for key in ("prompt", "prefix", "suffix", "system", "fim_marker"):
        try:  # argv bytes that are not UTF-8 arrive as lone surrogates: the tokenizer's TypeError traceback before
            (getattr(opts, key) or "").encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"config.{key}: the bytes at character {err.start} are not UTF-8; give the text in "
                             f"UTF-8") from None
    if opts.mode == "plain" and not opts.prompt:  # no token to continue: generate's ValueError named no key
        raise ValueError("prompt= is empty: mode=plain continues the text of prompt=; give prompt='...'")
    return opts


def prompt_ids(cfg: GenerateOptions, tokenizer) -> list[int]:
    if cfg.mode == "plain":
        return tokenizer.encode(cfg.prompt)
    if cfg.mode == "chat":
        return chat_prompt_ids(tokenizer, [{"role": "system", "content": cfg.system},
                                           {"role": "user", "content": cfg.prompt}])
    if cfg.mode == "fim":
        if cfg.prefix is not None or cfg.suffix is not None:
            prefix, suffix = cfg.prefix or "", cfg.suffix or ""
        elif cfg.prompt.count(cfg.fim_marker) == 1:
            prefix, suffix = cfg.prompt.split(cfg.fim_marker)
        else:
            raise ValueError(f"mode=fim: put exactly one {cfg.fim_marker!r} in prompt=, or give prefix= and suffix=")
        return format_fim_prompt(prefix, suffix, order=cfg.fim_order, spm_variant=cfg.spm_variant, tokenizer=tokenizer)
    raise ValueError(f"mode={cfg.mode!r}: use plain, fim or chat")


def run(hydra_cfg: DictConfig) -> str:
    cfg = options(hydra_cfg)
    device = pick_device(cfg.device)
    model, tokenizer = load_model_and_tokenizer(cfg.model, cfg.tokenizer, pick_dtype(cfg.dtype, device), device,
                                                cfg.allow_other_tokenizer)
    if tokenizer is None:
        raise ValueError(f"{cfg.model} has no tokenizer: pass tokenizer=PATH")
    ids = prompt_ids(cfg, tokenizer)
    stops = (tokenizer.eot_id,) if cfg.mode != "chat" else (tokenizer.eot_id, tokenizer.empty_output_id)
    with torch.inference_mode():
        out = generate(model, [ids], cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                       stop_token_ids=stops, seed=cfg.seed, vocab_size=tokenizer.vocab_size)[0]
    return tokenizer.decode(out)


# Its own config folder: in configs/ the group model/ would claim the `model=DIR` override.
@hydra.main(config_path=str(Path(config_dir()) / "generate"), config_name="generate", version_base=None)
def main(cfg: DictConfig) -> None:  # the console script: Hydra parses sys.argv
    try:
        text = run(cfg)
    except (FileNotFoundError, ValueError) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the one line hides where a bug raised it: show the trace
            raise
        print(f"refact-generate: {err}", file=sys.stderr)
        sys.exit(2)
    print(text)


if __name__ == "__main__":
    main()
