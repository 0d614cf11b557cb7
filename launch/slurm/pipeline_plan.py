#!/usr/bin/env python3
"""Print the Slurm plan of `refact-pipeline OVERRIDES...`, one array job per line: `STAGE STEP` for every step of
every enabled stage in run order, then `final NAME`: the single job that publishes DIR/documents and DIR/stats.json
(NAME is the last stage) or also tokenizes and packs (NAME is `tokenize`, when a tokenizer is given or trained).
Checks the config and the inputs first (the same checks as `refact-pipeline`), so a bad option fails at submission.

    python3 launch/slurm/pipeline_plan.py input=corpus/ output=out/ tokenizer=tok/
"""
from __future__ import annotations

import sys


def plan(argv: list[str]) -> list[tuple[str, str]]:
    from data_pipeline.cli import compose_config
    from data_pipeline.pipeline import TOKENIZE, prepare

    cfg = compose_config(argv)
    _root, stages, unavailable = prepare(cfg)
    for name, why in unavailable.items():
        print(f"pipeline_plan: stage {name} not run: {why}", file=sys.stderr)
    if not stages:
        raise SystemExit("pipeline_plan: no stage is enabled")
    lines = [(stage.name, step.name) for _, stage in stages for step in stage.steps]
    tok = cfg.get("tokenizer") or {}
    lines.append(("final", TOKENIZE if (tok.get("path") or tok.get("train")) else stages[-1][1].name))
    return lines


def main() -> int:
    from data_pipeline.pipeline import PipelineError

    try:
        for first, second in plan(sys.argv[1:]):
            print(first, second)
    except PipelineError as exc:
        print(f"pipeline_plan: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
