"""Held-out FIM tasks: the files the pipeline held out (`DIR/heldout/`), cut into line-aware prefix / middle /
suffix exactly as the fine-tuning mode of `data_pipeline.fim` cuts training files, and the scores of a model's
middle against the true one (exact match, edit similarity).

Shared by `refact-eval`'s heldout_fim task (evals/heldout_fim.py) and the trainer's validation during fine-tuning
(refact_train/validation.py), so both report the same numbers for the same cuts. The cuts depend only on
(seed, document index): two models (before and after a fine-tune) see the same tasks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
from rapidfuzz.distance import Levenshtein

from data_pipeline.fim import FimConfig, fim_rng, format_fim_prompt, split_text
from data_pipeline.records import Document, read_documents


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
    docs = []
    for f in files:
        try:
            docs += [d for d in read_documents(f) if d.kind in kinds]
        except (pa.ArrowException, OSError, KeyError) as err:  # pyarrow's messages name no file
            raise ValueError(f"{f}: not a readable held-out record file ({type(err).__name__}: {err}); rerun "
                             f"refact-pipeline to write {heldout}/ again") from err
        bad = next((d for d in docs if not isinstance(d.text, str)), None)  # a null or numeric text column
        if bad is not None:
            raise ValueError(f"{f}: record {bad.id!r} has a text of type {type(bad.text).__name__}, not a string; "
                             f"rerun refact-pipeline to write {heldout}/ again")
    return docs


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
    return Levenshtein.normalized_similarity(prediction, reference)


def normalized_exact_match(prediction: str, reference: str) -> bool:
    """Equal up to trailing whitespace (a middle's final newline is the model's choice to write or leave)."""
    return prediction.rstrip() == reference.rstrip()


def fim_prompt(task: HeldoutFimTask, tokenizer: Any, budget: int, order: str = "psm",
               spm_variant: str = "served") -> list[int]:
    """The prompt ids of a task, its prefix and suffix trimmed by whole lines to `budget` tokens."""
    prefix, suffix = trim_to_budget(task.prefix, task.suffix, tokenizer, budget)
    return format_fim_prompt(prefix, suffix, order=order, spm_variant=spm_variant, tokenizer=tokenizer)
