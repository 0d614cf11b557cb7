"""Task runners scored by execution: HumanEval completion, HumanEval in the chat format, single-line infilling."""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Mapping

from data_pipeline.chat import chat_prompt_ids
from data_pipeline.fim import format_fim_prompt
from evals.context import EvalContext
from evals.humaneval import build_chat_program, build_program, extract_code, load_problems, truncate_at_stop
from evals.infilling import build_infill_program, build_single_line_tasks, clean_single_line, exact_match
from evals.passk import mean_pass_at_k

log = logging.getLogger(__name__)


def _samples_per_problem(cfg: Mapping[str, Any], task: str) -> int:
    n = int(cfg["num_samples"])
    if float(cfg["temperature"]) <= 0 and n > 1:
        log.warning("%s: greedy decoding (temperature 0) gives one distinct sample; using num_samples=1", task)
        return 1
    return n


def _score(ctx: EvalContext, problem_ids: list[str], programs: list[str], desc: str) -> tuple[list, dict]:
    """Run the programs; per-problem sample and pass counts."""
    results = ctx.sandbox.run_many(programs, desc=desc)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pid, res in zip(problem_ids, results):
        counts[pid][0] += 1
        counts[pid][1] += int(res.passed)
    return results, counts


def _pass_at_k_summary(counts: dict, ks, n: int, temperature: float) -> dict:
    samples = [c[0] for c in counts.values()]
    correct = [c[1] for c in counts.values()]
    return {"problems": len(counts), "samples_per_problem": n, "temperature": temperature,
            **mean_pass_at_k(samples, correct, ks)}


def run_humaneval(ctx: EvalContext, cfg: Mapping[str, Any]) -> dict:
    """Completion mode: the prompt is continued and cut at the harness's stop sequences."""
    problems = ctx.limited(load_problems(cfg.get("data")))
    n = _samples_per_problem(cfg, "humaneval")
    tok = ctx.tokenizer
    rows = [p for p in problems for _ in range(n)]
    stops = list(cfg["stop_sequences"])
    outputs = ctx.generator.run([tok.encode(p.prompt) for p in rows], stop_token_ids=[tok.eot_id],
                                desc="humaneval generate", max_new_tokens=int(cfg["max_new_tokens"]),
                                temperature=float(cfg["temperature"]), stop_sequences=stops, decode=tok.decode)
    completions = [truncate_at_stop(tok.decode(o), stops) for o in outputs]
    results, counts = _score(ctx, [p.task_id for p in rows], [build_program(p, c) for p, c in zip(rows, completions)],
                             "humaneval execute")
    ctx.write_samples("humaneval_samples.jsonl", (
        {"task_id": p.task_id, "completion": c, "passed": r.passed, "status": r.status}
        for p, c, r in zip(rows, completions, results)))
    return _pass_at_k_summary(counts, cfg["k"], n, float(cfg["temperature"]))


def run_humaneval_chat(ctx: EvalContext, cfg: Mapping[str, Any]) -> dict:
    """The release's chat format: the problem is asked as a question, the code extracted from the answer."""
    problems = ctx.limited(load_problems(cfg.get("data")))
    n = _samples_per_problem(cfg, "humaneval_chat")
    tok = ctx.tokenizer
    rows = [p for p in problems for _ in range(n)]
    prompts = [chat_prompt_ids(tok, [{"role": "system", "content": cfg["system"]},
                                     {"role": "user", "content": str(cfg["query"]).format(prompt=p.prompt)}])
               for p in rows]
    outputs = ctx.generator.run(prompts, stop_token_ids=[tok.eot_id, tok.empty_output_id],
                                desc="humaneval_chat generate", max_new_tokens=int(cfg["max_new_tokens"]),
                                temperature=float(cfg["temperature"]))
    answers = [tok.decode(o) for o in outputs]
    codes = [extract_code(a, p.entry_point) for a, p in zip(answers, rows)]
    results, counts = _score(ctx, [p.task_id for p in rows],
                             [build_chat_program(p, c) for p, c in zip(rows, codes)], "humaneval_chat execute")
    ctx.write_samples("humaneval_chat_samples.jsonl", (
        {"task_id": p.task_id, "answer": a, "code": c, "passed": r.passed, "status": r.status}
        for p, a, c, r in zip(rows, answers, codes, results)))
    return _pass_at_k_summary(counts, cfg["k"], n, float(cfg["temperature"]))


def run_humaneval_infill(ctx: EvalContext, cfg: Mapping[str, Any]) -> dict:
    """Single-line infilling: greedy FIM per masked line, scored by the tests (pass@1) and by exact match."""
    all_tasks = build_single_line_tasks(load_problems(cfg.get("data")))
    tasks = ctx.limited(all_tasks)
    tok = ctx.tokenizer
    out: dict[str, Any] = {"tasks_built": len(all_tasks), "tasks": len(tasks)}
    for order in cfg["orders"]:
        prompts = [format_fim_prompt(t.prefix, t.suffix, order=order, spm_variant=cfg["spm_variant"], tokenizer=tok)
                   for t in tasks]
        outputs = ctx.generator.run(prompts, stop_token_ids=[tok.eot_id], desc=f"infill {order} generate",
                                    max_new_tokens=int(cfg["max_new_tokens"]), temperature=0.0)
        raw = [tok.decode(o) for o in outputs]
        middles = [clean_single_line(r) if cfg["single_line"] else r for r in raw]
        results, _ = _score(ctx, [t.task_id for t in tasks],
                            [build_infill_program(t, m) for t, m in zip(tasks, middles)], f"infill {order} execute")
        em = [exact_match(m, t.middle) for m, t in zip(middles, tasks)]
        ctx.write_samples(f"humaneval_infill_{order}_samples.jsonl", (
            {"task_id": t.task_id, "middle": t.middle, "completion": r, "passed": res.passed, "exact_match": e}
            for t, r, res, e in zip(tasks, raw, results, em)))
        out[order] = {"pass@1": sum(r.passed for r in results) / max(1, len(tasks)),
                      "exact_match": sum(em) / max(1, len(tasks))}
    return out
