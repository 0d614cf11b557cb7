"""Validation while training: the loss on the held-out (`valid`) split on a schedule, and which step was best.

The valid split is read through the same validated shard reader as training (refact_train/data.py `TokenStream`)
and cut into consecutive windows of `data.seq_len + 1` tokens (the last, shorter one padded without loss); each
window goes through the training FIM transform with an RNG from (`validation.seed`, window index), so every
evaluation sees exactly the same samples. The model runs in eval mode (dropout off) and is put back as it was.

Window i belongs to micro-batch i // micro_batch and micro-batch c to rank c % world_size; each rank sums its
token losses, loss tokens and target bytes and the sums are all-reduced, so every rank gets the same value, equal
(up to float summation order) to a one-process evaluation of the same weights. Every rank runs the same number of
forward passes (a rank short of a micro-batch runs one more and drops it): FSDP2 and ZeRO-3 gather parameters
collectively inside the forward.

`val_bits_per_byte` = summed NLL in bits / UTF-8 bytes of the target tokens with loss; special tokens (EOT, the FIM
sentinels, padding) count 0 bytes, as in `refact-eval`'s perplexity task.

`validation.fim_every`: the first `fim_cuts` cuts of refact-eval's heldout_fim task (data_pipeline/heldout_fim.py:
the same cuts, prompts and scores), completed greedily in length-sorted batches of 8 as refact-eval does. The full
model is gathered on rank 0 (every backend) and broadcast; batch b is completed by rank b % world_size and the score
sums are all-reduced, so N ranks share the work (rank 0 did it alone while the others waited) and all get the same
numbers.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data_pipeline.config import check_at_least, config_from_dict
from data_pipeline.fim import FimConfig
from data_pipeline.heldout_fim import (build_heldout_tasks, edit_similarity, fim_prompt, load_heldout_documents,
                                       normalized_exact_match)
from data_pipeline.shards import ManifestError
from data_pipeline.tokenizer import SPECIAL_TOKENS
from refact_train.data import TokenStream, collate, fim_transform
from refact_train.model import generate
from refact_train.models import build_model, model_from_state


@dataclass(frozen=True)
class ValidationConfig:
    every: int = 0             # evaluate the valid split every N optimizer steps and at the last step (0: never)
    max_batches: int = 8       # at most this many batches of train.global_batch windows (0: the whole split)
    at_start: bool = True      # also before the first step of a fresh run: the curve starts at the initial weights
    split: str = "valid"
    seed: int = 1234           # FIM cuts of the valid windows: fixed, so every evaluation sees the same samples
    keep_best: bool = True     # record the checkpoint with the lowest val_loss (RUN/best), saving one if needed
    fim_every: int = 0         # held-out-files FIM exact match / edit similarity every N steps (0: never)
    fim_cuts: int = 16         # at most this many FIM cuts of the held-out files (DIR/heldout/) per evaluation
    fim_samples_per_document: int = 4
    fim_max_new_tokens: int = 64
    fim_seed: int = 1234       # the cuts depend on (seed, document index) only, as in refact-eval's heldout_fim

    def __post_init__(self) -> None:
        check_at_least(self, "validation", every=0, max_batches=0, fim_every=0, fim_cuts=1,
                       fim_samples_per_document=1, fim_max_new_tokens=1)

    @classmethod
    def from_dict(cls, values: dict | None) -> "ValidationConfig":
        return config_from_dict(cls, dict(values or {}), "validation")

    @property
    def enabled(self) -> bool:
        return self.every > 0 or self.fim_every > 0


def target_byte_lengths(tokenizer) -> torch.Tensor:
    """UTF-8 bytes of each token id of the tokenizer (0 for special tokens: EOT, FIM sentinels, padding)."""
    specials = {tokenizer.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    specials |= set(tokenizer.tokenizer.get_added_tokens_decoder())
    return torch.tensor([0 if i in specials else len(tokenizer.decode_bytes([i])) for i in range(tokenizer.vocab_size)],
                        dtype=torch.float64)


class ValidWindows:
    """Window i of a split: tokens [i·L, i·L + L + 1) through the FIM transform; the last window may be short."""

    def __init__(self, path: str, split: str, seq_len: int, fim: dict, seed: int, tokenizer):
        self.stream = TokenStream(path, split, tokenizer_sha256=tokenizer.sha256)
        if len(self.stream) < 2:  # a lone EOT: no target, and a loss of 0/0 that would read as 0.0, the best ever
            raise ManifestError(f"{self.stream.dir}/manifest.json: split {split!r} holds {len(self.stream)} token, "
                                f"no next-token target to score")
        self.seq_len = seq_len
        self.n = max(1, math.ceil((len(self.stream) - 1) / seq_len))
        self.fim = fim_transform(fim, seed, tokenizer)
        self.pad = tokenizer.fim_pad_id

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        L = self.seq_len
        start = i * L
        tokens = self.stream.read(start, min(L + 1, len(self.stream) - start))
        ids, mask = self.fim(tokens, i)
        if len(ids) < L + 1:  # the split's tail: padding has no loss
            missing = L + 1 - len(ids)
            ids = np.concatenate([ids, np.full(missing, self.pad, dtype=np.int64)])
            mask = np.concatenate([mask, np.zeros(missing, dtype=bool)])
        return ids, mask


class Validator:
    """Decides itself when to evaluate; `maybe_run` is all the train loop calls. Every rank calls it."""

    def __init__(self, cfg: ValidationConfig, run_cfg: dict, tokenizer, backend, layout, precision, log=print):
        self.cfg, self.backend, self.precision, self.log = cfg, backend, precision, log
        self.device = backend.env.device
        self.windows = None
        if cfg.every > 0:
            d = run_cfg["data"]
            if d.get("kind", "shards") != "shards":
                raise ValueError(f"validation.every={cfg.every}: validation reads the valid split of token shards; "
                                 f"data.kind={d.get('kind')!r} has none (set validation.every=0)")
            try:
                self.windows = ValidWindows(d["path"], cfg.split, int(d["seq_len"]), dict(d.get("fim") or {}),
                                            cfg.seed, tokenizer)
            except ValueError as e:
                raise ManifestError(f"validation.every={cfg.every}: {e}. The pipeline writes the {cfg.split!r} split "
                                    f"from the documents it holds out (refact-pipeline ... holdout.fraction=0.1); or "
                                    f"set validation.every=0") from e
            count = self.windows.n
            if cfg.max_batches > 0:
                count = min(count, cfg.max_batches * layout.global_batch)
            mb, world, rank = layout.micro_batch, layout.world_size, layout.rank
            chunks = [list(range(i, min(i + mb, count))) for i in range(0, count, mb)]
            self.mine = chunks[rank::world]
            self.n_forward = math.ceil(len(chunks) / world)
            self.spare = chunks[0]  # what a rank short of a micro-batch runs (and drops) to keep forwards in step
            self.n_windows = count
            self.byte_len = target_byte_lengths(tokenizer).to(self.device)
            if backend.env.is_main:
                log(f"[validation] {count} windows of {d['seq_len']} tokens from split {cfg.split!r} "
                    f"({self.windows.n} in the split) every {cfg.every} steps")

        self.fim = None
        if cfg.fim_every > 0:
            self.run_cfg, self.tokenizer = run_cfg, tokenizer
            data_dir = Path(run_cfg["data"]["path"])
            if not (data_dir / "heldout").is_dir() and data_dir.name == "shards":
                data_dir = data_dir.parent  # data.path named the shards directory itself
            try:
                tasks, _ = build_heldout_tasks(load_heldout_documents(data_dir, ["code"]),
                                               FimConfig.from_dict({"mode": "finetune"}), cfg.fim_seed,
                                               cfg.fim_samples_per_document)
            except (ValueError, FileNotFoundError) as e:  # no DIR/heldout, or a damaged file in it
                raise ManifestError(f"validation.fim_every={cfg.fim_every}: {e}; or set validation.fim_every=0") from e
            if not tasks:
                raise ManifestError(f"validation.fim_every={cfg.fim_every}: {data_dir}/heldout has no code document "
                                    f"with a middle to cut; hold out code files (refact-pipeline ... "
                                    f"holdout.fraction=0.1) or set validation.fim_every=0")
            self.fim = tasks[:cfg.fim_cuts]

    def _due(self, every: int, step: int, last: bool) -> bool:
        return every > 0 and (step % every == 0 or last) and (step > 0 or self.cfg.at_start)

    def maybe_run(self, model: torch.nn.Module, step: int, last: bool = False) -> dict | None:
        """The validation record of this step ({"val_loss", "val_bits_per_byte", ..., "val_fim_exact_match", ...})
        when an evaluation is due, else None."""
        loss_due = self.windows is not None and self._due(self.cfg.every, step, last)
        fim_due = self.fim is not None and self._due(self.cfg.fim_every, step, last)
        if not (loss_due or fim_due):
            return None
        start = time.perf_counter()
        out = self.evaluate(model) if loss_due else {}
        if fim_due:
            out.update(self.heldout_fim())
        out["val_seconds"] = time.perf_counter() - start
        return out

    @torch.no_grad()
    def heldout_fim(self) -> dict:
        """Exact match and edit similarity of greedy middles, the same on every rank."""
        env = self.backend.env
        state = self.backend.full_model_state_dict()  # collective: the full weights on rank 0, whatever the backend
        model = model_from_state(self.run_cfg, state) if env.is_main else build_model(self.run_cfg["model"])
        model = model.to(self.device).eval()
        for p in model.parameters():
            self.backend.broadcast(p.data)
        tok, max_new, n_pos = self.tokenizer, self.cfg.fim_max_new_tokens, model.config.n_positions
        prompts = [fim_prompt(t, tok, n_pos - max_new - 3) for t in self.fim]  # three sentinels
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # exact matches, edit similarities
        for rows in [order[b:b + 8] for b in range(0, len(order), 8)][env.rank::env.world_size]:
            room = max(1, min(max_new, n_pos - max(len(prompts[i]) for i in rows)))
            for i, ids in zip(rows, generate(model, [prompts[i] for i in rows], room, temperature=0.0,
                                             stop_token_ids=(tok.eot_id,), vocab_size=tok.vocab_size)):
                prediction, middle = tok.decode(ids), self.fim[i].middle
                sums += torch.tensor([normalized_exact_match(prediction, middle), edit_similarity(prediction, middle)],
                                     dtype=torch.float64, device=self.device)
        del model
        exact, similarity = (float(x) for x in self.backend.all_reduce_sum(sums).cpu())
        return {"val_fim_exact_match": exact / len(self.fim), "val_fim_edit_similarity": similarity / len(self.fim),
                "val_fim_tasks": len(self.fim)}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> dict:
        was_training = model.training
        model.eval()  # dropout off (embedding, attention, residual, LoRA)
        dev = self.device
        sums = torch.zeros(3, dtype=torch.float64, device=dev)  # nll (nats), loss tokens, target bytes
        try:
            for k in range(self.n_forward):
                idx = self.mine[k] if k < len(self.mine) else self.spare
                b = collate([self.windows[i] for i in idx], idx)
                with torch.autocast(dev.type, dtype=self.precision or torch.float32,
                                    enabled=self.precision is not None):
                    logits = model(b.input_ids.to(dev))
                if k >= len(self.mine):
                    continue
                labels, mask = b.labels.to(dev).flatten(), b.loss_mask.to(dev).flatten().double()
                nll = F.cross_entropy(logits.float().flatten(0, 1), labels, reduction="none").double()
                sums += torch.stack([(nll * mask).sum(), mask.sum(), (self.byte_len[labels] * mask).sum()])
        finally:
            model.train(was_training)
        sums = self.backend.all_reduce_sum(sums)
        nll, tokens, n_bytes = (float(x) for x in sums.cpu())
        return {"val_loss": nll / max(tokens, 1.0), "val_bits_per_byte": nll / math.log(2) / max(n_bytes, 1.0),
                "val_tokens": int(tokens), "val_windows": self.n_windows}


def improves(best: dict | None, step: int, val_loss: float) -> bool:
    """Whether `val_loss` at `step` beats `best` ({"step", "val_loss"} or None). Step 0 (the initial weights, before
    any training) is never a best checkpoint: there is none to keep."""
    return step > 0 and math.isfinite(val_loss) and (best is None or val_loss < best["val_loss"])
