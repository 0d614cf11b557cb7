"""Held-out FIM on a user's repository: the files the pipeline held out (`DIR/heldout/`), cut into line-aware
prefix / middle / suffix exactly as the fine-tuning mode of `data_pipeline.fim` cuts training files, completed by the
model and compared with the true middle (exact match and edit similarity).

The cuts and the scores are data_pipeline/heldout_fim.py's, shared with the trainer's validation during fine-tuning.
The cuts depend only on (seed, document index), so two models (before and after a fine-tune) see the same tasks.
"""
from __future__ import annotations

from collections import defaultdict

from data_pipeline.heldout_fim import (build_heldout_tasks, edit_similarity, fim_prompt, load_heldout_documents,
                                       normalized_exact_match)
from evals.context import EvalContext
from evals.eval_config import HeldoutFimSection


def run_heldout_fim(ctx: EvalContext, cfg: HeldoutFimSection) -> dict:
    data_dir = ctx.require_data_dir("heldout_fim")
    docs = ctx.limited(load_heldout_documents(data_dir, cfg.kinds))
    tasks, skipped = build_heldout_tasks(docs, cfg.fim_config(), cfg.seed, cfg.samples_per_document)
    if not tasks:
        raise ValueError(f"{data_dir}/heldout: no held-out document of kind {cfg.kinds} gave a FIM task "
                         f"({len(docs)} documents, {skipped} without a middle to cut)")
    tok, max_new = ctx.tokenizer, cfg.max_new_tokens
    budget = ctx.generator.n_positions - max_new - 3  # three sentinels
    prompts = [fim_prompt(t, tok, budget, order=cfg.order, spm_variant=cfg.spm_variant) for t in tasks]
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
        "documents": len(docs), "tasks": len(tasks), "skipped_no_middle": skipped, "order": cfg.order,
        "exact_match": sum(em) / len(tasks), "edit_similarity": sum(es) / len(tasks),
        "by_splitter": {k: {"tasks": len(ix), "exact_match": sum(em[i] for i in ix) / len(ix),
                            "edit_similarity": sum(es[i] for i in ix) / len(ix)}
                        for k, ix in sorted(by_splitter.items())},
    }
