"""Batched generation with a KV cache: greedy or temperature / top-p sampling, stop tokens, left padding."""
from __future__ import annotations

import functools
import math
from numbers import Integral, Real
from typing import Sequence

import torch

from refact_train.model.cache import KVCache


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None):
    """logits [B, V] -> next ids [B]. temperature 0 is greedy."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.double()  # shifted to max 0, in float64: a tiny temperature (1e-45) made logits / t NaN
    probs = torch.softmax((logits - logits.max(dim=-1, keepdim=True).values) / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        keep = sorted_probs.cumsum(dim=-1) - sorted_probs < top_p  # the smallest set whose mass reaches top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _integer(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_options(max_new_tokens, temperature, top_p, seed, vocab_size, rows: int) -> None:
    """One line naming the option, before any tensor is built (a float size, a NaN temperature or a string seed each
    failed deep inside torch; a negative temperature was silently greedy)."""
    def number(value) -> bool:
        return isinstance(value, Real) and not isinstance(value, bool) and not math.isnan(value)

    if not _integer(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not number(temperature) or not 0 <= temperature < math.inf:
        raise ValueError(f"generate: temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    if not number(top_p) or not 0 < top_p <= 1:
        raise ValueError(f"generate: top_p must be a number in (0, 1], got {top_p!r}")
    if seed is not None and not (_integer(seed) and -2**63 <= seed < 2**64):  # what torch's manual_seed takes
        raise ValueError(f"generate: seed must be an integer in [-2**63, 2**64) or null, got {seed!r}")
    if vocab_size is not None and not (_integer(vocab_size) and 0 < vocab_size <= rows):
        raise ValueError(f"generate: vocab_size must be in [1, {rows}], the model's embedding rows, got {vocab_size!r} "
                         f"(a tokenizer larger than the model is not the model's)")


def prompt_ids(prompts, rows: int) -> list[list[int]]:
    """Each prompt as a list of ids in [0, rows). Float ids were truncated silently (5.7 read as 5); a string, a
    nested list or an id past int64 failed inside torch; an id past the embedding was an IndexError on CPU, a
    device-side assert on CUDA."""
    out = []
    for n, prompt in enumerate(prompts):
        ids = prompt.tolist() if isinstance(prompt, torch.Tensor) else prompt
        if isinstance(ids, Integral):  # a flat list of ids given as the batch
            raise ValueError(f"generate: prompts must be a list of prompts, each a list of token ids (one prompt: "
                             f"[ids]); item {n} is {ids!r}")
        ids = list(ids)
        if not ids:
            raise ValueError("generate: every prompt needs at least one token")
        for i in ids:
            if not _integer(i):
                raise ValueError(f"generate: prompt {n} must be a list of integer token ids; it holds {i!r}")
            if not 0 <= i < rows:
                raise ValueError(f"generate: prompt token id {i} is outside the model's {rows} embedding rows "
                                 f"(is the tokenizer the model's?)")
        out.append(ids)
    if not out:
        raise ValueError("generate: no prompts given")
    return out


def stop_ids(value) -> list[int]:
    """stop_token_ids as a list of ids: a tensor of ids (what a tokenizer gives) was refused as not integers, one id
    was "'int' object is not iterable", None "'NoneType' object is not iterable"."""
    ids = value.tolist() if isinstance(value, torch.Tensor) else value
    ids = [ids] if _integer(ids) else ids
    try:
        ids = list(ids)
    except TypeError:
        ids = [value]
    if not all(_integer(i) for i in ids):
        raise ValueError(f"generate: stop_token_ids must be integer token ids, got {value!r} (a list or tensor of "
                         f"ids, or one id; () for none)")
    return ids


def keeps_mode(fn):
    """The model leaves in the mode it came in, also when generation raises (a request past n_positions, logits
    holding NaN, Ctrl-C): a training model was left in eval mode, its dropout off, silently."""
    @functools.wraps(fn)
    def wrapper(model, *args, **kwargs):
        was_training = model.training
        try:
            return fn(model, *args, **kwargs)
        finally:
            model.train(was_training)
    return wrapper


@keeps_mode
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
    rows = model.config.vocab_size
    check_options(max_new_tokens, temperature, top_p, seed, vocab_size, rows)
    prompts = prompt_ids(prompts, rows)
    pad = model.config.pad_token_id if pad_token_id is None else pad_token_id
    if not (_integer(pad) and 0 <= pad < rows):  # it fills the left padding: an IndexError from the embedding
        raise ValueError(f"generate: pad_token_id must be an id in [0, {rows}), the model's embedding rows, got "
                         f"{pad!r}")
    stop_token_ids = stop_ids(stop_token_ids)
    model.eval()
    device = next(model.parameters()).device
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
    # an id the model cannot produce never stops a row (and one past int64 was torch's "Overflow" error)
    stops = torch.tensor(sorted({i for i in stop_token_ids if 0 <= i < rows}), dtype=torch.long, device=device)
    cache = KVCache.for_model(model, batch, longest + max_new_tokens) if use_cache else None
    out: list[list[int]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    logits = model(ids, attention_mask=mask, cache=cache, last_token_only=True)
    for step in range(max_new_tokens):
        if not bool(torch.isfinite(logits[:, -1]).all()):  # greedy took NaN as id 0 (<|endoftext|>): an empty answer
            raise ValueError(f"generate: the model's logits hold NaN or inf at new token {step}: its weights hold "
                             f"NaN/inf or its dtype overflows (try dtype=float32)")
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
    return out
