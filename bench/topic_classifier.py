#!/usr/bin/env python
"""Precision and recall of the computer-science-topic filter on the held-out test split of the labelled set.

    python scripts/build_topic_eval_set.py --out build/topic_eval      # once (a few minutes)
    python bench/topic_classifier.py [--data build/topic_eval] [--threshold T] [--scorer-path MODEL.json]

Uses the scorer and threshold of configs/pipeline/topic/default.yaml unless overridden. Prints the counts at that
threshold, the precision both as measured and with the two classes weighted equally (the test split has more
positives than negatives), per-source rates, a few other thresholds, and the scoring speed.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

from data_pipeline.filters.topic import TopicFilter
from data_pipeline.config import config_dir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tools/ lives at the repository root
from tools.topic_eval.dataset import read_examples  # noqa: E402
from tools.topic_eval.metrics import counts_at  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("build/topic_eval"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--scorer-path", default=None)
    args = parser.parse_args(argv)

    cfg = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "pipeline" / "topic" / "default.yaml"))
    if args.threshold is not None:
        cfg["threshold"] = args.threshold
    if args.scorer_path:
        cfg["scorer"]["path"] = args.scorer_path
    topic = TopicFilter.from_config(cfg)
    path = args.data / f"{args.split}.jsonl"
    if not path.is_file():
        print(f"error: {path} does not exist: build it with scripts/build_topic_eval_set.py --out {args.data}",
              file=sys.stderr)
        return 1
    examples = read_examples(path)
    start = time.perf_counter()
    scores = [topic.scorer.score(ex.text) for ex in examples]
    seconds = time.perf_counter() - start
    labels = [ex.label for ex in examples]
    megabytes = sum(len(ex.text.encode()) for ex in examples) / 1e6

    c = counts_at(scores, labels, topic.threshold)
    positives, negatives = c.tp + c.fn, c.fp + c.tn
    balanced_precision = c.recall / (c.recall + c.false_positive_rate) if c.recall + c.false_positive_rate else 1.0
    print(f"{args.split} split: {len(examples)} examples ({positives} computer science, {negatives} not), "
          f"{megabytes:.1f} MB, {len({ex.group for ex in examples})} groups")
    print(f"threshold {topic.threshold}: precision {c.precision:.3f}  recall {c.recall:.3f}  F1 {c.f1:.3f}  "
          f"(tp {c.tp} fp {c.fp} fn {c.fn} tn {c.tn})")
    print(f"precision with both classes weighted equally: {balanced_precision:.3f}; "
          f"false-positive rate {c.false_positive_rate:.3f}")
    print("\nper source (label 1: share kept = recall; label 0: share kept = false-positive rate)")
    by_source: dict[tuple[str, int], list[float]] = defaultdict(list)
    for ex, score in zip(examples, scores):
        by_source[(ex.source, ex.label)].append(score)
    for (source, label), values in sorted(by_source.items()):
        kept = sum(v >= topic.threshold for v in values) / len(values)
        print(f"  {source:18s} label {label}  n={len(values):5d}  kept {kept:.3f}")
    print("\nthreshold  precision  recall  balanced-precision")
    for threshold in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        t = counts_at(scores, labels, threshold)
        bp = t.recall / (t.recall + t.false_positive_rate) if t.recall + t.false_positive_rate else 1.0
        print(f"  {threshold:.2f}     {t.precision:.3f}     {t.recall:.3f}   {bp:.3f}")
    print(f"\nscoring speed: {len(examples) / seconds:.0f} docs/s, {megabytes / seconds:.2f} MB/s (one core, pure Python)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
