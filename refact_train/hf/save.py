"""Write an HF directory that `AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)` loads
(docs/design.md)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from huggingface_hub import save_torch_state_dict

from refact_train.hf.load import CONFIG_KEYS, EXPORT_RECORD
from refact_train.model import RefactConfig, RefactForCausalLM

TEMPLATES = Path(__file__).parent / "templates"
MODELING_FILES = ("configuration_gpt_refact.py", "modeling_gpt_refact.py")
DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3


def hf_config_dict(config: RefactConfig, dtype: torch.dtype) -> dict:
    return {
        "architectures": ["GPTRefactForCausalLM"],
        "model_type": "gpt_refact",
        "auto_map": {
            "AutoConfig": "configuration_gpt_refact.GPTRefactConfig",
            "AutoModelForCausalLM": "modeling_gpt_refact.GPTRefactForCausalLM",
        },
        **{key: getattr(config, key) for key in (*CONFIG_KEYS, "ln_f_bias", "tie_word_embeddings")},
        "multi_query": True,
        "use_cache": True,
        "attention_softmax_in_fp32": True,
        "scale_attention_softmax_in_fp32": True,
        "attention_bias_in_fp32": True,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def special_token_ids(config: RefactConfig, eot_id: int, pad_id: int, log=print) -> dict[str, int]:
    """The bos / eos / pad ids an export writes: its tokenizer's (EOT, <fim_pad>), which its tokenizer_config.json names
    too. A model config that says otherwise (an init_from HF directory's, a hand edit) made transformers' generate stop
    on another token: it is overridden, and said."""
    ids = {"bos_token_id": eot_id, "eos_token_id": eot_id, "pad_token_id": pad_id}
    other = [f"{key} {getattr(config, key)}" for key, value in ids.items() if getattr(config, key) != value]
    if other:
        log(f"warning: the model config's {', '.join(other)} are not its tokenizer's special ids; the export writes "
            f"the tokenizer's (bos {eot_id}, eos {eot_id}, pad {pad_id}), the tokens the model was trained to end "
            f"and pad with", file=sys.stderr)
    return ids


def nonfinite_error(name: str, diverged: bool, dtype: str, fix: str) -> ValueError:
    """A tensor that holds NaN or inf in the file written: from the model itself (a diverged run), or from values
    beyond the range of the dtype written (float16 stops at 65504): transformers / llama.cpp then generate garbage."""
    if diverged:
        return ValueError(f"{name} holds NaN or infinite values (the training diverged): export an earlier checkpoint")
    return ValueError(f"{name} has values beyond the range of {dtype}, which would be written as infinite: export as "
                      f"{fix}")


def check_out_dir(path: str | Path) -> Path:
    """An export replaces its output directory as a whole: refuse a file, or a directory that holds something other
    than an earlier export (a typo such as the home directory must not be deleted)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file: the HF export is a directory; choose another output path")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise ValueError(f"{out} exists and is not an HF export (no config.json), so it is not replaced; choose a new "
                         f"directory or empty this one")
    return out


def save_hf_checkpoint(
    model: RefactForCausalLM,
    path: str | Path,
    tokenizer=None,
    *,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    log=print,
) -> Path:
    """Write config.json, our modeling code, (sharded) safetensors, generation_config.json and the tokenizer.

    The directory is written under a temporary name and renamed when complete, so a crash never leaves a half export
    (nor a half-deleted earlier one).
    """
    out = check_out_dir(path)
    config = model.config
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only {config.vocab_size} "
                         f"embedding rows; export with the tokenizer the model was trained with (--tokenizer PATH)")
    source = model.state_dict()
    state = {k: v.detach().to(device="cpu", dtype=dtype) for k, v in source.items()}
    for name, tensor in state.items():
        if not bool(torch.isfinite(tensor).all()):
            raise nonfinite_error(name, not bool(torch.isfinite(source[name]).all()), str(tensor.dtype)[6:],
                                  "bfloat16 or float32 (--dtype)")
    tmp, old = out.with_name(out.name + ".tmp-export"), out.with_name(out.name + ".old-export")
    for leftover in (tmp, old):  # of an export killed midway
        if leftover.exists():
            shutil.rmtree(leftover)
    tmp.mkdir(parents=True)
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # safetensors stores no shared tensors; the loader re-ties
    stored_dtype = next(iter(state.values())).dtype
    save_torch_state_dict(state, tmp, max_shard_size=max_shard_bytes)  # sharded with an index above the limit
    ids = {key: getattr(config, key) for key in ("bos_token_id", "eos_token_id", "pad_token_id")}
    if tokenizer is not None:
        ids = special_token_ids(config, tokenizer.eot_id, tokenizer.fim_pad_id, log)
    hf_config = {**hf_config_dict(config, stored_dtype), **ids}
    (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    generation = {**ids, "do_sample": False}
    (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    for name in MODELING_FILES:
        shutil.copyfile(TEMPLATES / name, tmp / name)
    if tokenizer is not None:  # recorded: a tokenizer.json swapped in later is refused where the export is loaded
        tokenizer.save(tmp)
        (tmp / EXPORT_RECORD).write_text(json.dumps({"tokenizer_sha256": tokenizer.sha256}, indent=2) + "\n")
    if out.exists():  # renamed aside, not deleted in place: a kill now leaves OUT whole, old or new
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out
