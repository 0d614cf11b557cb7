"""refact-generate model=DIR prompt=... mode=fim|chat|plain: complete one prompt from an HF directory or checkpoint."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from data_pipeline.chat import chat_prompt_ids
from data_pipeline.fim import format_fim_prompt
from refact_train.model import generate
from refact_train.models import load_model_and_tokenizer, pick_device, pick_dtype
from data_pipeline.config import config_dir


def prompt_ids(cfg: DictConfig, tokenizer) -> list[int]:
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


def run(cfg: DictConfig) -> str:
    device = pick_device(cfg.device)
    model, tokenizer = load_model_and_tokenizer(cfg.model, cfg.tokenizer, pick_dtype(cfg.dtype, device), device)
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
