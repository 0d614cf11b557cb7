"""Held-out FIM on a user's repository: the files the pipeline held out (`DIR/heldout/`), cut into line-aware
prefix / middle / suffix exactly as the fine-tuning mode of `data_pipeline.fim` cuts training files, completed by the
model and compared with the true middle (exact match and edit similarity).

The cuts depend only on (seed, document index), so two models (before and after a fine-tune) see the same tasks.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from rapidfuzz.distance import Levenshtein

from data_pipeline.fim import FimConfig, fim_rng, format_fim_prompt, split_text
from data_pipeline.records import Document, read_documents
from evals.context import EvalContext


@dataclass(frozen=True)
class HeldoutFimTask:
    task_id: str  # "<document id>#<sample>"
    path: str | None
    prefix: str
    middle: str
    suffix: str
    splitter: str


def load_heldout_documents(data_dir: Path, kinds: Sequence[str]) -> list[Document]:
    heldout = data_dir / "heldout"
    files = sorted(heldout.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{heldout}: no held-out document records (*.parquet); run refact-pipeline with a "
                                f"holdout fraction (or max_documents) above 0 so that it writes {heldout}/")
    return [d for f in files for d in read_documents(f) if d.kind in kinds]


def build_heldout_tasks(docs: Sequence[Document], fim: FimConfig, seed: int, samples_per_document: int):
    """(tasks, skipped): one line-aware cut per (document, sample); documents with no middle to cut are counted."""
    tasks, skipped = [], 0
    for d_index, doc in enumerate(docs):
        for s in range(samples_per_document):
            split = split_text(doc.text, fim_rng(seed, d_index * samples_per_document + s), fim)
            if not split.middle.strip():
                skipped += 1
                continue
            tasks.append(HeldoutFimTask(f"{doc.id}#{s}", doc.path, split.prefix, split.middle, split.suffix,
                                        split.kind))
    return tasks, skipped


def trim_to_budget(prefix: str, suffix: str, tokenizer: Any, budget: int) -> tuple[str, str]:
    """Drop whole lines from the far ends (start of the prefix, end of the suffix) until both fit in `budget` tokens,
    keeping the lines nearest the middle; the prefix gets up to three quarters of the budget."""
    def keep(lines: list[str], room: int, from_end: bool) -> tuple[list[str], int]:
        kept, used = [], 0
        for line in (reversed(lines) if from_end else lines):
            n = len(tokenizer.encode(line))
            if used + n > room:
                break
            kept.append(line)
            used += n
        return (kept[::-1] if from_end else kept), used

    pre_lines, suf_lines = prefix.splitlines(keepends=True), suffix.splitlines(keepends=True)
    pre, used = keep(pre_lines, budget * 3 // 4, from_end=True)
    suf, _ = keep(suf_lines, budget - used, from_end=False)
    return "".join(pre), "".join(suf)


def edit_similarity(prediction: str, reference: str) -> float:
    """1 - Levenshtein distance / length of the longer string (1.0 for two empty strings)."""
    longest = max(len(prediction), len(reference))
    return 1.0 if longest == 0 else 1.0 - Levenshtein.distance(prediction, reference) / longest


def normalized_exact_match(prediction: str, reference: str) -> bool:
    """Equal up to trailing whitespace (a middle's final newline is the model's choice to write or leave)."""
    return prediction.rstrip() == reference.rstrip()


def run_heldout_fim(ctx: EvalContext, cfg: Mapping[str, Any]) -> dict:
    data_dir = ctx.require_data_dir("heldout_fim")
    docs = ctx.limited(load_heldout_documents(data_dir, list(cfg["kinds"])))
    fim = FimConfig.from_dict({"mode": "finetune", **dict(cfg.get("fim") or {})})
    tasks, skipped = build_heldout_tasks(docs, fim, int(cfg["seed"]), int(cfg["samples_per_document"]))
    if not tasks:
        raise ValueError(f"{data_dir}/heldout: no held-out document of kind {list(cfg['kinds'])} gave a FIM task "
                         f"({len(docs)} documents, {skipped} without a middle to cut)")
    tok, max_new = ctx.tokenizer, int(cfg["max_new_tokens"])
    budget = ctx.generator.n_positions - max_new - 3  # three sentinels
    prompts = []
    for t in tasks:
        prefix, suffix = trim_to_budget(t.prefix, t.suffix, tok, budget)
        prompts.append(format_fim_prompt(prefix, suffix, order=cfg["order"], spm_variant=cfg["spm_variant"],
                                         tokenizer=tok))
    outputs = ctx.generator.run(prompts, stop_token_ids=[tok.eot_id], desc="heldout_fim generate",
                                max_new_tokens=max_new, temperature=0.0)
    predictions = [tok.decode(o) for o in outputs]
    em = [normalized_exact_match(p, t.middle) for p, t in zip(predictions, tasks)]
    es = [edit_similarity(p, t.middle) for p, t in zip(predictions, tasks)]
    by_splitter: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(tasks):
        by_splitter[t.splitter].append(i)
    ctx.write_samples("heldout_fim_samples.jsonl", (
        {"task_id": t.task_id, "path": t.path, "splitter": t.splitter, "middle": t.middle, "prediction": p,
         "exact_match": e, "edit_similarity": round(s, 4)} for t, p, e, s in zip(tasks, predictions, em, es)))
    return {
        "documents": len(docs), "tasks": len(tasks), "skipped_no_middle": skipped, "order": cfg["order"],
        "exact_match": sum(em) / len(tasks), "edit_similarity": sum(es) / len(tasks),
        "by_splitter": {k: {"tasks": len(ix), "exact_match": sum(em[i] for i in ix) / len(ix),
                            "edit_similarity": sum(es[i] for i in ix) / len(ix)}
                        for k, ix in sorted(by_splitter.items())},
    }
