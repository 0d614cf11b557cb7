"""`refact-pipeline input=PATH output=DIR [tokenizer=PATH] [key=value ...]`: the data pipeline's command.

A Hydra config tree (configs/pipeline.yaml + configs/pipeline/) composed with the command-line overrides; a wrong
key or a missing input stops before any work with a message that names it.
"""
from __future__ import annotations

import sys
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data_pipeline.config import config_dir
from data_pipeline.pipeline import PipelineError, run_pipeline

USAGE = """usage: refact-pipeline input=PATH output=DIR [tokenizer=PATH | tokenizer.train=true] [key=value ...]

  input=PATH         a directory, git repository, JSONL or Parquet file, saved HF dataset (or [P1,P2])
  output=DIR         DIR/documents, DIR/dropped, DIR/stats.json (+ DIR/shards with a tokenizer)
  stage=NAME         one stage only (ingest license quality english topic decontam exact_dedup near_dedup tokenize)
  task=i n_tasks=N   one SLURM array task's share of the stage's units
  workers=N          local worker processes (default: all cores)
Every key of configs/pipeline.yaml can be set, e.g. license.allow_unknown=true quality.code.max_line_length=2000.
Docs: docs/pipeline.md"""


def rewrite_overrides(argv: list[str]) -> list[str]:
    """`tokenizer=PATH` is shorthand for `tokenizer.path=PATH` (the tokenizer node also holds training options)."""
    out = []
    for arg in argv:
        if arg.startswith("tokenizer=") and arg not in ("tokenizer=null",):
            arg = "tokenizer.path=" + arg.split("=", 1)[1]
        out.append(arg)
    return out


def compose_config(argv: list[str]) -> dict[str, Any]:
    with initialize_config_dir(config_dir=config_dir(), version_base=None):
        cfg = compose(config_name="pipeline", overrides=rewrite_overrides(argv))
    missing = [k for k in ("input", "output") if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise SystemExit(f"refact-pipeline: missing {' and '.join(k + '=...' for k in missing)}\n\n{USAGE}")
    return OmegaConf.to_container(cfg, resolve=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return 0
    try:
        cfg = compose_config(argv)
    except (HydraException, OmegaConfBaseException) as exc:
        print(f"refact-pipeline: bad option: {exc}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        report = run_pipeline(cfg, log=lambda msg: print(msg, file=sys.stderr))
    except PipelineError as exc:
        print(f"refact-pipeline: {exc}", file=sys.stderr)
        return 2
    for note in report.notes:
        print(f"refact-pipeline: {note}", file=sys.stderr)
    if report.stats:
        unknown = sum(s["dropped"].get("unknown", 0) for s in report.stats["stages"] if s["stage"] == "license")
        if unknown:
            print(f"refact-pipeline: {unknown} code files without a detected licence were dropped; keep them with "
                  f"license.allow_unknown=true or license.allow_unknown_sources=[SOURCE]", file=sys.stderr)
        out = report.stats["output"]
        print(f"refact-pipeline: {report.stats['input']['documents']} documents in, {out['documents']} kept "
              f"({out['bytes']} bytes), {report.stats['dropped_total']} dropped; see {cfg['output']}/stats.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
