"""Task runners scored by execution: HumanEval completion, HumanEval in the chat format, single-line infilling."""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from data_pipeline.tokenizer import chat_prompt_ids
from data_pipeline.fim import format_fim_prompt
from evals.context import EvalContext
from evals.eval_config import HumanEvalChatSection, HumanEvalSection, InfillSection
from evals.humaneval import Problem, build_chat_program, build_program, extract_code, load_problems, truncate_at_stop
from evals.infilling import build_infill_program, build_single_line_tasks, clean_single_line, exact_match
from evals.passk import mean_pass_at_k
from evals.sandbox import Program

log = logging.getLogger(__name__)


def _rows(ctx: EvalContext, cfg: HumanEvalSection | HumanEvalChatSection, task: str) -> tuple[list[Problem], int]:
    """The problems, each repeated once per sample, and the samples per problem."""
    n = cfg.num_samples
    if cfg.temperature <= 0 and n > 1:
        log.warning("%s: greedy decoding (temperature 0) gives one distinct sample; using num_samples=1", task)
        n = 1
    return [p for p in ctx.limited(load_problems(cfg.data)) for _ in range(n)], n


def _score(ctx: EvalContext, cfg: HumanEvalSection | HumanEvalChatSection, task: str, rows: list[Problem],
           programs: list[Program], n: int) -> tuple[list, dict]:
    """Run the programs; the results and the pass@k summary over problems."""
    results = ctx.sandbox.run_many(programs, desc=f"{task} execute")
    samples = Counter(p.task_id for p in rows)
    correct = Counter(p.task_id for p, r in zip(rows, results) if r.passed)
    return results, {"problems": len(samples), "samples_per_problem": n, "temperature": cfg.temperature,
                     **mean_pass_at_k(list(samples.values()), [correct[t] for t in samples], cfg.k)}


def run_humaneval(ctx: EvalContext, cfg: HumanEvalSection) -> dict:
    """Completion mode: the prompt is continued and cut at the harness's stop sequences."""
    rows, n = _rows(ctx, cfg, "humaneval")
    tok = ctx.tokenizer
    stops = list(cfg.stop_sequences)
    outputs = ctx.generator.run([tok.encode(p.prompt) for p in rows], stop_token_ids=[tok.eot_id],
                                desc="humaneval generate", max_new_tokens=cfg.max_new_tokens,
                                temperature=cfg.temperature, stop_sequences=stops, decode=tok.decode)
    completions = [truncate_at_stop(tok.decode(o), stops) for o in outputs]
    results, summary = _score(ctx, cfg, "humaneval", rows, [build_program(p, c) for p, c in zip(rows, completions)], n)
    ctx.write_samples("humaneval_samples.jsonl", (
        {"task_id": p.task_id, "completion": c, "passed": r.passed, "status": r.status}
        for p, c, r in zip(rows, completions, results)))
    return summary


def run_humaneval_chat(ctx: EvalContext, cfg: HumanEvalChatSection) -> dict:
    """The release's chat format: the problem is asked as a question, the code extracted from the answer."""
    rows, n = _rows(ctx, cfg, "humaneval_chat")
    tok = ctx.tokenizer
    prompts = [chat_prompt_ids(tok, [{"role": "system", "content": cfg.system},
                                     {"role": "user", "content": cfg.query.format(prompt=p.prompt)}])
               for p in rows]
    outputs = ctx.generator.run(prompts, stop_token_ids=[tok.eot_id, tok.empty_output_id],
                                desc="humaneval_chat generate", max_new_tokens=cfg.max_new_tokens,
                                temperature=cfg.temperature)
    answers = [tok.decode(o) for o in outputs]
    codes = [extract_code(a, p.entry_point) for a, p in zip(answers, rows)]
    results, summary = _score(ctx, cfg, "humaneval_chat", rows,
                              [build_chat_program(p, c) for p, c in zip(rows, codes)], n)
    ctx.write_samples("humaneval_chat_samples.jsonl", (
        {"task_id": p.task_id, "answer": a, "code": c, "passed": r.passed, "status": r.status}
        for p, a, c, r in zip(rows, answers, codes, results)))
    return summary


def run_humaneval_infill(ctx: EvalContext, cfg: InfillSection) -> dict:
    """Single-line infilling: greedy FIM per masked line, scored by the tests (pass@1) and by exact match."""
    all_tasks = build_single_line_tasks(load_problems(cfg.data))
    tasks = ctx.limited(all_tasks)
    tok = ctx.tokenizer
    out: dict[str, Any] = {"tasks_built": len(all_tasks), "tasks": len(tasks)}
    for order in cfg.orders:
        prompts = [format_fim_prompt(t.prefix, t.suffix, order=order, spm_variant=cfg.spm_variant, tokenizer=tok)
                   for t in tasks]
        outputs = ctx.generator.run(prompts, stop_token_ids=[tok.eot_id], desc=f"infill {order} generate",
                                    max_new_tokens=cfg.max_new_tokens, temperature=0.0)
        raw = [tok.decode(o) for o in outputs]
        middles = [clean_single_line(r) if cfg.single_line else r for r in raw]
        results = ctx.sandbox.run_many([build_infill_program(t, m) for t, m in zip(tasks, middles)],
                                       desc=f"infill {order} execute")
        em = [exact_match(m, t.middle) for m, t in zip(middles, tasks)]
        ctx.write_samples(f"humaneval_infill_{order}_samples.jsonl", (
            {"task_id": t.task_id, "middle": t.middle, "completion": r, "passed": res.passed, "exact_match": e}
            for t, r, res, e in zip(tasks, raw, results, em)))
        out[order] = {"pass@1": sum(r.passed for r in results) / max(1, len(tasks)),
                      "exact_match": sum(em) / max(1, len(tasks))}
    return out
