"""Export to GGUF for llama.cpp's `refact` architecture, written with the `gguf` package's GGUFWriter (docs/gguf.md).

Exact, not approximate: llama.cpp's refact graph normalises with RMSNorm where the model uses LayerNorm without bias.
Every write into the residual stream is centred here (each embedding row; attn.c_proj and mlp.c_proj along their
output dimension), so the stream stays zero-mean, and on a zero-mean vector LayerNorm without bias is RMSNorm with the
same weight and epsilon (the trick SliceGPT uses). LayerNorm ignores the mean it removes, so the centred model gives
the original's logits (tests/hf/test_gguf.py checks it in float64). The lm_head is always written as its own tensor:
a tied head must keep the uncentred embedding.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import gguf
import numpy as np
import torch
from tokenizers import Tokenizer

from data_pipeline.atomic import atomic_path
from refact_train.hf.save import nonfinite_error, special_token_ids

ARCH = "refact"
MAX_ALIBI_BIAS = 8.0  # llama.cpp hard-codes it for refact; our slopes are the max-bias-8 ALiBi slopes
QUANT = gguf.GGMLQuantizationType
DTYPES = {"f32": (QUANT.F32, gguf.LlamaFileType.ALL_F32), "f16": (QUANT.F16, gguf.LlamaFileType.MOSTLY_F16),
          "bf16": (QUANT.BF16, gguf.LlamaFileType.MOSTLY_BF16), "q8_0": (QUANT.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0)}
_ALIASES = {"float32": "f32", "fp32": "f32", "float16": "f16", "fp16": "f16", "bfloat16": "bf16", "q8": "q8_0"}
_TORCH_TO_GGUF = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
FIM_TOKENS = {"prefix": "<fim_prefix>", "suffix": "<fim_suffix>", "middle": "<fim_middle>", "pad": "<fim_pad>"}
EOT_TOKEN = "<|endoftext|>"
TOKENIZER_KEY = "refact_train.tokenizer_sha256"
CHAT_TURN_TOKEN = "<empty_output>"  # ends an assistant turn; written as llama.cpp's EOM token so generation stops there
# The release's chat format (data_pipeline/tokenizer.py) for llama.cpp's server (--jinja) and Ollama.
CHAT_TEMPLATE = ("{% for message in messages %}<empty_output>{{ message['role'] | upper }} {{ message['content'] }}\n"
                 "{% endfor %}{% if add_generation_prompt %}<empty_output>ASSISTANT{% endif %}")

_LAYER = re.compile(r"^transformer\.h\.(\d+)\.(.+)$")
# the writes into the residual stream -> the dimension centred (embedding rows; [n_embd, in] projections' columns)
_CENTRE_DIM = {"transformer.wte.weight": 1, "attn.c_proj.weight": 0, "mlp.c_proj.weight": 0}


class GGUFExportError(ValueError):
    """The model or tokenizer cannot be written as an exact refact GGUF; the message names the fix."""


@dataclass(frozen=True)
class GGUFExport:
    path: Path
    dtype: str
    n_tensors: int
    n_tokens: int  # token list length = embedding rows (tokenizer entries plus unused padding rows)
    pre_tokenizer: str
    kept_f16: tuple[str, ...] = ()  # q8_0: tensors whose rows are not a multiple of 32, stored as f16
    dropped_ln_f_bias: bool = False  # --drop-ln-f-bias removed a non-zero bias: not exact

    def summary(self) -> str:
        extra = f"; {len(self.kept_f16)} tensors kept in f16 (rows not a multiple of 32)" if self.kept_f16 else ""
        extra += "; ln_f.bias DROPPED, logits differ from the source" if self.dropped_ln_f_bias else ""
        return (f"{self.dtype}, {self.n_tensors} tensors, {self.n_tokens} tokens, pre-tokenizer "
                f"{self.pre_tokenizer!r}{extra}")


# ---- weights ---------------------------------------------------------------------------------------------------
def gguf_dtype(name: str, stored: torch.dtype = torch.float32) -> str:
    """"stored" (the source's own float type) or one of DTYPES, also under torch's names (float16, bfloat16...)."""
    if name in ("stored", "auto"):
        return _TORCH_TO_GGUF.get(stored, "f32")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DTYPES:
        raise GGUFExportError(f"--dtype {name!r} is not a GGUF type this exporter writes: use stored, "
                              f"{', '.join(DTYPES)} (f32 is exact; q8_0 is llama.cpp's 8-bit type)")
    return key


def centre_tensor(name: str, tensor: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """The tensor with its writes into the residual stream made zero-mean (computed in float64).

    Embedding rows lose their mean over n_embd; an output projection W [n_embd, in] loses the mean of each column, so
    W @ a sums to zero for any a. Every other tensor is returned unchanged (cast to `out_dtype`).
    """
    out_dtype = out_dtype or tensor.dtype
    layer = _LAYER.match(name)
    dim = _CENTRE_DIM.get(layer.group(2) if layer else name)
    if dim is None:
        return tensor.to(out_dtype)
    t = tensor.double()
    return (t - t.mean(dim=dim, keepdim=True)).to(out_dtype)


def centre_residual_writes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """centre_tensor over a whole state dict (keeps each tensor's dtype)."""
    return {name: centre_tensor(name, t) for name, t in state.items()}


def check_expressible(state: dict[str, torch.Tensor], drop_ln_f_bias: bool = False) -> bool:
    """Refuse what llama.cpp's refact graph cannot compute exactly; True when a non-zero ln_f bias is dropped.

    Everything else RefactForCausalLM can hold, the graph computes: any head count and width, one K/V head, any MLP
    width, tied or untied head (written untied)."""
    bias = state.get("ln_f.bias")
    if bias is not None and bool(bias.any()) and not drop_ln_f_bias:
        offset = (state["lm_head.weight"].double() @ bias.double()).abs().max().item()
        raise GGUFExportError(
            f"ln_f carries a bias (the earlier released revision): llama.cpp's refact architecture has no output-norm "
            f"bias, so the GGUF would shift every logit by lm_head @ ln_f.bias (up to {offset:.3g}). Pass "
            f"--drop-ln-f-bias to export anyway (not exact), or export a checkpoint without that bias")
    return bias is not None and bool(bias.any())


def refact_tensors(state: dict[str, torch.Tensor], config) -> Iterator[tuple[str, torch.Tensor]]:
    """(llama.cpp tensor name, float32 tensor) in file order: centred, with K/V and gate/up split."""
    names = gguf.TENSOR_NAMES
    T = gguf.MODEL_TENSOR

    def f32(key: str) -> torch.Tensor:
        return centre_tensor(key, state[key], torch.float32)

    yield names[T.TOKEN_EMBD] + ".weight", f32("transformer.wte.weight")
    for i in range(config.n_layer):
        p = f"transformer.h.{i}."
        k, v = f32(p + "attn.kv.weight").split(config.head_dim, dim=0)
        gate, up = f32(p + "mlp.gate_up_proj.weight").split(config.mlp_hidden, dim=0)
        for tensor_kind, tensor in ((T.ATTN_NORM, f32(p + "ln_1.weight")), (T.ATTN_Q, f32(p + "attn.q.weight")),
                                    (T.ATTN_K, k), (T.ATTN_V, v), (T.ATTN_OUT, f32(p + "attn.c_proj.weight")),
                                    (T.FFN_NORM, f32(p + "ln_2.weight")), (T.FFN_GATE, gate), (T.FFN_UP, up),
                                    (T.FFN_DOWN, f32(p + "mlp.c_proj.weight"))):
            yield names[tensor_kind].format(bid=i) + ".weight", tensor
    yield names[T.OUTPUT_NORM] + ".weight", f32("ln_f.weight")
    yield names[T.OUTPUT] + ".weight", f32("lm_head.weight")  # the uncentred head, tied or not


def encode_tensor(tensor: torch.Tensor, dtype: str) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """(data, GGUF type) for one float32 tensor; norms (1-D) stay f32 as in llama.cpp's own converter."""
    data = np.ascontiguousarray(tensor.numpy(), dtype=np.float32)
    qtype = DTYPES[dtype][0]
    if data.ndim == 1 or qtype == QUANT.F32:
        return data, QUANT.F32
    if qtype == QUANT.F16 or qtype == QUANT.Q8_0 and data.shape[-1] % gguf.GGML_QUANT_SIZES[QUANT.Q8_0][0]:
        with np.errstate(over="ignore"):  # beyond 65504 is inf: refused by the caller, who names the tensor
            return data.astype(np.float16), QUANT.F16
    return gguf.quants.quantize(data, qtype), qtype


# ---- tokenizer -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GGUFVocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int]  # eot, fim prefix / suffix / middle / pad, chat_turn when the tokenizer has it


def pre_tokenizer_type(spec: dict | None, source: str = "tokenizer") -> str:
    """The llama.cpp pre-tokenizer that splits text exactly as this `tokenizers` pre-tokenizer does.

    ByteLevel alone (our train_bpe): "gpt-2". Digits (one per digit) then ByteLevel, the StarCoder tokenizer that the
    release ships: "refact" (the single-digit split, then the GPT-2 pattern, as in llama.cpp's src/llama-vocab.cpp).
    """
    def byte_level(p: dict) -> bool:
        return p.get("type") == "ByteLevel" and not p.get("add_prefix_space") and p.get("use_regex", True)

    if spec and byte_level(spec):
        return "gpt-2"
    parts = (spec or {}).get("pretokenizers") if (spec or {}).get("type") == "Sequence" else None
    if parts and len(parts) == 2 and parts[0].get("type") == "Digits" and parts[0].get("individual_digits") \
            and byte_level(parts[1]):
        return "refact"
    raise GGUFExportError(
        f"{source}: pre-tokenizer {json.dumps(spec)} has no llama.cpp equivalent that splits text the same way "
        f"(supported: ByteLevel without prefix space -> 'gpt-2'; Digits(individual) + ByteLevel -> 'refact'); "
        f"export with the tokenizer the model was trained with (--tokenizer PATH)")


def gguf_vocab(tokenizer, n_rows: int) -> GGUFVocab:
    """Token list padded to the embedding's `n_rows` (llama.cpp requires one token per row), types, merges, ids."""
    hf: Tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    source = getattr(tokenizer, "source", None) or "tokenizer"
    spec = json.loads(hf.to_str())
    model = spec["model"]
    if model.get("type") != "BPE" or model.get("byte_fallback") or model.get("continuing_subword_prefix") \
            or model.get("end_of_word_suffix") or model.get("ignore_merges"):
        raise GGUFExportError(f"{source}: a plain byte-level BPE model is needed for llama.cpp's 'gpt2' tokenizer, "
                              f"found {({k: v for k, v in model.items() if k not in ('vocab', 'merges')})}")
    if spec.get("normalizer") is not None:
        raise GGUFExportError(f"{source}: has a normalizer ({spec['normalizer'].get('type')}); llama.cpp's BPE "
                              f"tokenizer applies none, so the token ids would differ")
    pre = pre_tokenizer_type(spec.get("pre_tokenizer"), source)
    vocab = hf.get_vocab(with_added_tokens=True)
    if len(vocab) > n_rows:
        raise GGUFExportError(f"{source}: {len(vocab)} tokens but the model's embedding has {n_rows} rows; export "
                              f"with the tokenizer the model was trained with (--tokenizer PATH)")
    special = {t["content"] for t in spec.get("added_tokens", []) if t.get("special")}
    added = {t["content"] for t in spec.get("added_tokens", [])}
    by_id = {i: t for t, i in vocab.items()}
    twin = next((t for t in vocab if by_id[vocab[t]] != t), None)
    if twin is not None or max(by_id, default=0) >= n_rows:  # llama.cpp: one token per id, one id per embedding row
        why = (f"tokens {twin!r} and {by_id[vocab[twin]]!r} share id {vocab[twin]}" if twin is not None else
               f"token {by_id[max(by_id)]!r} has id {max(by_id)}, beyond the model's {n_rows} embedding rows")
        raise GGUFExportError(f"{source}: {why}; export with the tokenizer the model was trained with (--tokenizer "
                              f"PATH)")
    # embedding rows beyond the tokenizer (padding to a multiple of 64) are unused [PADi] tokens
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(n_rows)]
    types = [gguf.TokenType.UNUSED if i not in by_id else gguf.TokenType.CONTROL if tok in special else
             gguf.TokenType.USER_DEFINED if tok in added else gguf.TokenType.NORMAL for i, tok in enumerate(tokens)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    missing = [t for t in (*FIM_TOKENS.values(), EOT_TOKEN) if t not in vocab]
    if missing:
        raise GGUFExportError(f"{source}: no {', '.join(missing)} token; llama.cpp's /infill needs the FIM tokens. "
                              f"Export with the tokenizer the model was trained with (--tokenizer PATH), or one made "
                              f"by data_pipeline.tokenizer.train_bpe (it adds the 19 Refact special tokens)")
    ids = {"eot": vocab[EOT_TOKEN], **{k: vocab[t] for k, t in FIM_TOKENS.items()}}
    if CHAT_TURN_TOKEN in vocab:
        ids["chat_turn"] = vocab[CHAT_TURN_TOKEN]
    return GGUFVocab(tokens, [int(t) for t in types], merges, pre, ids)


# ---- the file --------------------------------------------------------------------------------------------------
def check_request(path: str | Path, dtype: str) -> Path:
    """Refuse a bad output name or dtype before anything is loaded; returns the path."""
    path = Path(path)
    if path.is_dir():
        raise GGUFExportError(f"{path}: is a directory; for --format gguf, OUT is the .gguf file to write")
    if path.suffix != ".gguf":
        raise GGUFExportError(f"{path}: for --format gguf, OUT is the file to write and ends in .gguf "
                              f"(e.g. {path.name or 'model'}-f16.gguf)")
    gguf_dtype(dtype)
    return path


def remove_stale_temps(path: Path) -> None:
    """The temporaries of earlier writes of `path` killed midway (a kill -9 leaves them, each as big as the model)."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        try:
            os.kill(int(pid), 0)  # a live writer's file stays
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            pass


def write_gguf(model, tokenizer, path: str | Path, dtype: str = "stored", *, drop_ln_f_bias: bool = False,
               name: str | None = None, log=print) -> GGUFExport:
    """Write `model` (RefactForCausalLM) and its tokenizer as one .gguf file for llama.cpp (atomically)."""
    path = check_request(path, dtype)
    if tokenizer is None:
        raise GGUFExportError("no tokenizer found with the model: a GGUF carries its tokenizer, pass --tokenizer PATH")
    config = model.config
    state = dict(model.state_dict())
    dtype = gguf_dtype(dtype, state["lm_head.weight"].dtype)
    diverged = next((name for name, t in state.items() if not bool(torch.isfinite(t).all())), None)
    if diverged is not None:
        raise nonfinite_error(diverged, True, dtype, "")
    dropped_bias = check_expressible(state, drop_ln_f_bias)
    vocab = gguf_vocab(tokenizer, state["transformer.wte.weight"].shape[0])
    ids = special_token_ids(config, vocab.special_ids["eot"], vocab.special_ids["pad"], log)

    kept_f16: list[str] = []
    remove_stale_temps(path)
    with atomic_path(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), ARCH)
        writer.add_name(name or path.stem)
        writer.add_file_type(DTYPES[dtype][1])
        if dtype == "q8_0":
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_context_length(config.n_positions)
        writer.add_embedding_length(config.n_embd)
        writer.add_feed_forward_length(config.mlp_hidden)
        writer.add_block_count(config.n_layer)
        writer.add_head_count(config.n_head)
        writer.add_head_count_kv(1)
        writer.add_layer_norm_rms_eps(config.layer_norm_epsilon)
        writer.add_max_alibi_bias(MAX_ALIBI_BIAS)
        writer.add_bool("refact_train.residual_centred", True)  # LayerNorm == RMSNorm holds for this file
        if getattr(tokenizer, "sha256", None):  # the identity an HF export records in refact_export.json
            writer.add_string(TOKENIZER_KEY, tokenizer.sha256)

        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(vocab.pre)
        writer.add_token_list(vocab.tokens)
        writer.add_token_types(vocab.types)
        writer.add_token_merges(vocab.merges)
        writer.add_bos_token_id(ids["bos_token_id"])
        writer.add_eos_token_id(ids["eos_token_id"])
        writer.add_eot_token_id(vocab.special_ids["eot"])
        if "chat_turn" in vocab.special_ids:
            writer.add_eom_token_id(vocab.special_ids["chat_turn"])
        writer.add_pad_token_id(ids["pad_token_id"])
        writer.add_add_bos_token(False)  # our prompts start with the text (or a FIM / chat token), never a BOS
        writer.add_add_eos_token(False)
        keys = gguf.Keys.Tokenizer
        for key, which in ((keys.FIM_PRE_ID, "prefix"), (keys.FIM_SUF_ID, "suffix"), (keys.FIM_MID_ID, "middle"),
                           (keys.FIM_PAD_ID, "pad")):
            writer.add_uint32(key, vocab.special_ids[which])
        writer.add_chat_template(CHAT_TEMPLATE)

        n_tensors = 0
        for gguf_name, tensor in refact_tensors(state, config):
            data, qtype = encode_tensor(tensor, dtype)
            if qtype == QUANT.F16 and not np.isfinite(data).all():
                raise nonfinite_error(gguf_name, False, "f16", "f32 or bf16")
            if dtype == "q8_0" and qtype == QUANT.F16:
                kept_f16.append(gguf_name)
            writer.add_tensor(gguf_name, data, raw_dtype=qtype)
            n_tensors += 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return GGUFExport(path, dtype, n_tensors, len(vocab.tokens), vocab.pre, tuple(kept_f16), dropped_bias)
