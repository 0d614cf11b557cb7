#!/usr/bin/env python3
"""Print the Slurm plan of `refact-pipeline OVERRIDES...`, one array job per line: `STAGE STEP` for every step of
every enabled stage that makes documents, in run order (consecutive filter stages as one line, `license..decontam
filter`: they run as one streamed pass, data_pipeline/chain.py), then `final NAME`: the single job that publishes
DIR/documents and DIR/stats.json (NAME is the last stage) and also tokenizes and packs (NAME is `tokenize`, when a
tokenizer is given or trained).
Checks the config and the inputs first (the same checks as `refact-pipeline`), so a bad option fails at submission.

    python3 launch/slurm/pipeline_plan.py input=corpus/ output=out/ tokenizer=tok/
"""
from __future__ import annotations

import sys

from data_pipeline.chain import ChainStep, chain_groups, chain_label
from data_pipeline.cli import compose_config
from data_pipeline.pipeline import PipelineError, prepare


def plan(argv: list[str]) -> list[tuple[str, str]]:
    _root, stages = prepare(compose_config(argv))
    if not stages:
        raise SystemExit("pipeline_plan: no stage is enabled")
    # Stages that make documents run as arrays, consecutive filter stages as one streamed pass (`license..decontam
    # filter`); the final job publishes the documents and runs the rest (tokenization).
    lines = []
    for group in chain_groups([(i, s) for i, s in stages if s.makes_documents], fuse=True):
        if len(group) > 1:
            lines.append((chain_label([s.name for _, s in group]), ChainStep.name))
        else:
            lines += [(group[0][1].name, step.name) for step in group[0][1].steps]
    lines.append(("final", stages[-1][1].name))
    return lines


def main() -> int:
    try:
        for first, second in plan(sys.argv[1:]):
            print(first, second)
    except PipelineError as exc:
        print(f"pipeline_plan: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
