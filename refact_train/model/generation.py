"""Batched generation with a KV cache: greedy or temperature / top-p sampling, stop tokens, left padding."""
from __future__ import annotations

from typing import Sequence

import torch

from refact_train.model.cache import KVCache


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None):
    """logits [B, V] -> next ids [B]. temperature 0 is greedy."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        keep = sorted_probs.cumsum(dim=-1) - sorted_probs < top_p  # the smallest set whose mass reaches top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop_token_ids: Sequence[int] = (0,),
    use_cache: bool = True,
    seed: int | None = None,
    pad_token_id: int | None = None,
    vocab_size: int | None = None,
) -> list[list[int]]:
    """Continue each prompt; returns the generated ids only, without the stop token that ended a row.

    `vocab_size`: the tokenizer's size. The embedding is padded past it (to a multiple of 64); ids of those rows
    decode to nothing, so they are never produced. None: every row of the model may be produced.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate: every prompt needs at least one token")
    if max_new_tokens < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"generate: max_new_tokens must be >= 0 and top_p in (0, 1], got {max_new_tokens} and {top_p}")
    if vocab_size is not None and not 0 < vocab_size <= model.config.vocab_size:
        raise ValueError(f"generate: vocab_size {vocab_size} must be in [1, {model.config.vocab_size}], the model's "
                         f"embedding rows (a tokenizer larger than the model is not the model's)")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = model.config.pad_token_id if pad_token_id is None else pad_token_id
    batch, longest = len(prompts), max(len(p) for p in prompts)
    if longest + max_new_tokens > model.config.n_positions:
        raise ValueError(f"generate: {longest} prompt + {max_new_tokens} new tokens exceed n_positions "
                         f"{model.config.n_positions}")
    ids = torch.full((batch, longest), pad, dtype=torch.long, device=device)
    mask = torch.zeros((batch, longest), dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):  # left padding: the last prompt token of every row is at the same column
        ids[row, longest - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, longest - len(prompt):] = 1
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    stops = torch.tensor(sorted(set(stop_token_ids)), dtype=torch.long, device=device)
    cache = KVCache.for_model(model, batch, longest + max_new_tokens) if use_cache else None
    out: list[list[int]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    logits = model(ids, attention_mask=mask, cache=cache, last_token_only=True)
    for _ in range(max_new_tokens):
        nxt = sample_next(logits[:, -1, :vocab_size], temperature, top_p, generator)
        hit_stop = torch.isin(nxt, stops)
        for row in (~done & ~hit_stop).nonzero().flatten().tolist():
            out[row].append(int(nxt[row]))
        done |= hit_stop
        if bool(done.all()):
            break
        nxt = nxt.masked_fill(done, pad)
        mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype, device=device)], dim=1)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        if cache is not None:
            logits = model(nxt[:, None], attention_mask=mask, cache=cache, last_token_only=True)
        else:
            logits = model(ids, attention_mask=mask, last_token_only=True)
    model.train(was_training)
    return out
