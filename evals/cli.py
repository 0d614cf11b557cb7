"""refact-eval model=DIR tasks=[humaneval,humaneval_infill,heldout_fim,perplexity] out=FILE limit=N"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import hydra
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from evals.context import EvalContext
from evals.eval_config import eval_options
from evals.generation import BatchGenerator, GenerationConfig
from evals.heldout_fim import run_heldout_fim
from evals.humaneval import load_problems
from evals.humaneval_tasks import run_humaneval, run_humaneval_chat, run_humaneval_infill
from evals.perplexity import run_perplexity
from evals.report import check_output, pending_samples_dir, write_report
from evals.sandbox import SandboxConfig, SandboxError
from refact_train.models import load_model_and_tokenizer, pick_device, pick_dtype
from data_pipeline.config import config_dir, config_from_dict

log = logging.getLogger("refact-eval")

TASKS: dict[str, Callable[[EvalContext, Any], dict]] = {
    "humaneval": run_humaneval,
    "humaneval_chat": run_humaneval_chat,
    "humaneval_infill": run_humaneval_infill,
    "heldout_fim": run_heldout_fim,
    "perplexity": run_perplexity,
}
DATA_TASKS = ("heldout_fim", "perplexity")
PROBLEM_TASKS = ("humaneval", "humaneval_chat", "humaneval_infill")


def compose_config(overrides: list[str]) -> DictConfig:
    """The config `refact-eval OVERRIDES...` would run with (for tests and notebooks)."""
    with initialize_config_dir(config_dir=str(Path(config_dir()) / "eval"), version_base=None):
        return compose(config_name="eval", overrides=overrides)


def run(cfg: DictConfig) -> dict:
    """Evaluate, write FILE (JSON) and the Markdown report beside it; returns the report."""
    opts, sections = eval_options(OmegaConf.to_container(cfg, resolve=True))
    tasks = list(opts.tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"tasks={tasks}: unknown {unknown}; choose from {sorted(TASKS)}")
    needs_data = [t for t in tasks if t in DATA_TASKS]
    if needs_data and not opts.data:  # fail before the model is loaded
        raise ValueError(f"tasks {needs_data} need data=DIR: a refact-pipeline output directory (with heldout/ and "
                         f"shards/); or drop them from tasks=[...]")
    check_output(opts.out)
    for task in tasks:
        if task in PROBLEM_TASKS:  # a bad problem file is named now, not after the model has generated
            load_problems(sections[task].data)
    gen_cfg = config_from_dict(GenerationConfig, opts.generation, "generation")
    sandbox_cfg = SandboxConfig.from_dict(opts.sandbox)
    if opts.cpu_threads:
        torch.set_num_threads(opts.cpu_threads)
    device = pick_device(opts.device)
    dtype = pick_dtype(opts.dtype, device)
    model, tokenizer = load_model_and_tokenizer(opts.model, opts.tokenizer, dtype, device, opts.allow_other_tokenizer)
    if tokenizer is None:
        raise ValueError(f"{opts.model} has no tokenizer.json: pass tokenizer=PATH")
    model.eval()
    pending = pending_samples_dir(opts.out)
    generator = BatchGenerator(model, gen_cfg, seed=opts.seed, vocab_size=tokenizer.vocab_size)
    ctx = EvalContext(model=model, tokenizer=tokenizer, generator=generator,
                      sandbox_config=sandbox_cfg, out_dir=pending, limit=opts.limit, seed=opts.seed,
                      data_dir=Path(opts.data) if opts.data else None)
    results, timing = {}, {}
    try:
        for task in tasks:
            log.info("task %s", task)
            start = time.perf_counter()
            with torch.inference_mode():
                results[task] = TASKS[task](ctx, sections[task])
            timing[task] = round(time.perf_counter() - start, 2)
            log.info("task %s done in %.1f s: %s", task, timing[task], results[task])
    except BaseException:
        shutil.rmtree(pending, ignore_errors=True)  # an earlier result at out=FILE stays whole
        raise
    stats = ctx.generator.stats
    report = {
        "model": opts.model,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "tokenizer_sha256": tokenizer.sha256,
        "limit": opts.limit,
        "tasks": results,
        "timing_s": timing,
        "generation": {"prompts": stats.prompts, "new_tokens": stats.new_tokens, "seconds": round(stats.seconds, 2),
                       "tokens_per_s": round(stats.tokens_per_s, 2), "batch_size": gen_cfg.batch_size},
        # what the sandbox guaranteed in this run; its "warnings" (a weaker guarantee than docs/evals.md's full one)
        # are repeated at the top level so that no reader of the result misses them
        "sandbox_isolation": ctx._sandbox.isolation if ctx._sandbox else None,
        "warnings": list(ctx._sandbox.warnings) if ctx._sandbox else [],
        "published": opts.published,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    json_path, md_path = write_report(report, opts.out, samples=pending)
    log.info("wrote %s and %s", json_path, md_path)
    return report


@hydra.main(config_path=str(Path(config_dir()) / "eval"), config_name="eval", version_base=None)
def main(cfg: DictConfig) -> None:  # the console script: Hydra parses sys.argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(cfg)
    except (FileNotFoundError, ValueError, SandboxError) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the one line hides where a bug raised it: show the trace
            raise
        print(f"refact-eval: {err}", file=sys.stderr)
        sys.exit(2)
    print(Path(cfg.out).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
