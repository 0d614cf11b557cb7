"""Perplexity and bits per byte on the held-out token shards (`DIR/shards/`, split "valid").

The valid split's token stream (documents separated by EOT) is cut into non-overlapping windows of `context` tokens;
in each window every token after the first is predicted from the ones before it. Bits per byte divides the summed
negative log-likelihood (in bits) by the UTF-8 bytes of the predicted tokens (special tokens such as EOT count no
bytes), which makes models with different tokenizers comparable.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from data_pipeline.shards import open_split, read_manifest
from data_pipeline.tokenizer import SPECIAL_TOKENS
from evals.context import EvalContext
from evals.eval_config import PerplexitySection


def token_windows(shards: list[np.ndarray], context: int, max_windows: int | None) -> list[np.ndarray]:
    """Non-overlapping windows of `context` tokens over the concatenated shards (the last, shorter one kept if it
    predicts anything)."""
    stream = np.concatenate([np.asarray(s, dtype=np.int64) for s in shards]) if shards else np.empty(0, np.int64)
    windows = [stream[i:i + context] for i in range(0, len(stream), context)]
    windows = [w for w in windows if len(w) >= 2]
    return windows[:max_windows] if max_windows else windows


@torch.no_grad()
def window_nll(model: torch.nn.Module, windows: list[np.ndarray], batch_size: int, device) -> tuple[float, list]:
    """Summed NLL (nats) over all predicted tokens and, per window, the predicted token ids."""
    total = 0.0
    targets = []
    model.eval()
    for i in tqdm(range(0, len(windows), batch_size), desc="perplexity", unit="batch", leave=False):
        batch = windows[i:i + batch_size]
        # right padding (zeros): causal attention never lets a real token see it
        ids = pad_sequence([torch.as_tensor(w, dtype=torch.long) for w in batch], batch_first=True).to(device)
        mask = (torch.arange(ids.shape[1]) < torch.tensor([len(w) for w in batch])[:, None]).to(device)
        logits = model(ids[:, :-1])
        for row in range(len(batch)):  # one row at a time in fp32: [T, vocab] floats, not [B, T, vocab]
            nll = F.cross_entropy(logits[row].float(), ids[row, 1:], reduction="none")
            total += float((nll * mask[row, 1:]).sum())
        targets.extend(w[1:] for w in batch)
    return total, targets


def run_perplexity(ctx: EvalContext, cfg: PerplexitySection) -> dict:
    data_dir = ctx.require_data_dir("perplexity")
    tok = ctx.tokenizer
    manifest = read_manifest(data_dir, tokenizer_sha256=tok.sha256)  # a different tokenizer makes the numbers moot
    shards = open_split(data_dir, "valid")
    if not shards:
        raise ValueError(f"{manifest.directory}/manifest.json: the valid split is empty; run refact-pipeline with a "
                         f"holdout fraction above 0")
    context = min(cfg.context or ctx.generator.n_positions, ctx.generator.n_positions)
    windows = token_windows(shards, context, ctx.limit or cfg.max_windows)
    if not windows:  # one-token documents, or a split of a single token: nothing is predicted from anything
        raise ValueError(f"{manifest.directory}/manifest.json: the valid split ({sum(len(s) for s in shards)} tokens) "
                         f"has no window of 2 tokens or more, so no token to score; hold out more documents")
    device = next(ctx.model.parameters()).device
    nll, targets = window_nll(ctx.model, windows, cfg.batch_size, device)
    n_tokens = sum(len(t) for t in targets)
    n_special = len(SPECIAL_TOKENS)
    n_bytes = sum(len(tok.decode_bytes([int(i) for i in t if i >= n_special])) for t in targets)
    loss = nll / n_tokens
    return {"windows": len(windows), "context": context, "tokens": n_tokens, "bytes": n_bytes,
            "valid_tokens_in_split": int(manifest.counts.get("valid", {}).get("tokens", 0)),
            "loss": loss, "perplexity": math.exp(loss), "bits_per_byte": nll / math.log(2) / max(1, n_bytes)}
