"""Load a local HF directory of Refact-1.6B (either released revision, or our own export) into RefactForCausalLM."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from data_pipeline.config import config_from_dict
from refact_train.hf.revisions import to_current_names
from refact_train.hf.weights_io import load_weights, read_json
from refact_train.model import RefactConfig, RefactForCausalLM, alibi_slopes

# config.json keys of the release that map one to one onto RefactConfig
CONFIG_KEYS = ("vocab_size", "n_embd", "n_head", "n_layer", "n_positions", "n_inner", "layer_norm_epsilon",
                "initializer_range", "bos_token_id", "eos_token_id", "pad_token_id")


def config_from_hf(hf: dict[str, Any], source: str, has_ln_f_bias: bool) -> RefactConfig:
    if not isinstance(hf, dict):
        raise ValueError(f"{source}: not a model config (a JSON object of settings such as n_embd, n_layer)")
    model_type = hf.get("model_type")
    if model_type not in (None, "gpt_refact"):
        raise ValueError(f"{source}: model_type is {model_type!r}; this loader reads gpt_refact (Refact-1.6B) checkpoints")
    if hf.get("multi_query") is False:
        raise ValueError(f"{source}: multi_query is false; the Refact architecture has one shared K/V head")
    values = {k: hf[k] for k in CONFIG_KEYS if hf.get(k) is not None}
    if isinstance(values.get("eos_token_id"), list):  # transformers allows several; the first is the EOT
        if not values["eos_token_id"]:
            raise ValueError(f"{source}: eos_token_id is an empty list; give the end-of-text token's id, or delete "
                             f"the key")
        values["eos_token_id"] = values["eos_token_id"][0]
    # The release's config does not set it, and transformers' default (True) would be wrong: untied unless stated.
    values["tie_word_embeddings"] = hf.get("tie_word_embeddings") or False
    values["ln_f_bias"] = hf.get("ln_f_bias") or has_ln_f_bias
    return config_from_dict(RefactConfig, values, source)  # types checked: "2" or 64.0 where an integer belongs


# Beside config.json, not in it: transformers' save_pretrained keeps config keys but writes tokenizer.json again (with
# a post-processor of its own, another sha256), so a key there refused every re-saved directory; it drops this file.
EXPORT_RECORD = "refact_export.json"  # {"tokenizer_sha256": the RefactTokenizer.sha256 of the tokenizer shipped}


def exported_tokenizer(directory: str | Path) -> tuple[str, str] | None:
    """(sha256, record file) of the tokenizer an export of ours shipped, which a tokenizer.json swapped in the directory
    later does not change; None for a directory that records none (the release, an export without a tokenizer, a
    directory transformers saved again)."""
    path = Path(directory) / EXPORT_RECORD
    if not path.is_file():
        return None
    record = read_json(path)
    sha = record.get("tokenizer_sha256") if isinstance(record, dict) else None
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ValueError(f"{path}: tokenizer_sha256 is {sha!r}, not a sha256 (64 hex digits); export the model "
                         f"again, or delete the file to load its tokenizer unchecked")
    return sha, str(path)


def _check_tensors(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], source: str) -> None:
    problems = []
    for name, ref in expected.items():
        if name not in found:
            problems.append(f"missing {name} (expected shape {tuple(ref.shape)})")
        elif tuple(found[name].shape) != tuple(ref.shape):
            problems.append(f"{name}: expected shape {tuple(ref.shape)}, found {tuple(found[name].shape)}")
        elif not found[name].is_floating_point():  # load_state_dict's "can require gradients" traceback before
            problems.append(f"{name}: stored as {str(found[name].dtype).removeprefix('torch.')}, not a float type")
    problems += [f"unexpected tensor {name} {tuple(found[name].shape)}" for name in sorted(set(found) - set(expected))]
    if problems:
        listed = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ValueError(f"{source}: the weights do not match the model its config.json describes:\n  {listed}")


def load_hf_checkpoint(
    path: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> tuple[RefactForCausalLM, RefactConfig]:
    """Load weights and config from an HF directory; tensors keep their stored dtype unless `dtype` is given."""
    directory = Path(path)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory}: no config.json; pass the directory of an HF checkpoint or export")
    hf_config = read_json(config_path)
    raw, weights_file = load_weights(directory)
    source = str(directory / weights_file)
    tensors = to_current_names(raw, source)
    config = config_from_hf(hf_config, str(config_path), has_ln_f_bias="ln_f.bias" in tensors)
    layers = {m.group(1) for name in tensors if (m := re.match(r"transformer\.h\.(\d+)\.", name))}
    if len(layers) != config.n_layer:  # before the model is built: n_layer 100000 took minutes and gigabytes
        raise ValueError(f"{config_path}: n_layer is {config.n_layer}, but {source} holds {len(layers)} layers; "
                         f"give the n_layer of these weights")
    if config.tie_word_embeddings:
        wte = tensors.get("transformer.wte.weight")
        head = tensors.setdefault("lm_head.weight", wte)
        if head is not wte and not torch.equal(head, wte):  # tying would silently drop the trained head
            raise ValueError(f"{source}: holds an lm_head.weight that differs from transformer.wte.weight, but "
                             f"{config_path} ties them (tie_word_embeddings: true); set it to false to load both")
    with torch.device("meta"):
        model = RefactForCausalLM(config)
    _check_tensors(model.state_dict(), tensors, source)
    if dtype is not None:
        tensors = {k: v.to(dtype) for k, v in tensors.items()}
    model.load_state_dict(tensors, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.transformer.wte.weight
    model.register_buffer("alibi_slopes", alibi_slopes(config.n_head), persistent=False)
    return model.to(device), config
