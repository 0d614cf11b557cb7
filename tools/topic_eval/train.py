"""Train the shipped computer-science-topic scorer on the labelled set and choose its default threshold.

    python -m tools.topic_eval.train --data build/topic_eval \\
        --out data_pipeline/filters/models/topic_cs_logreg.json

Vocabulary: words seen in at least `min_groups` training groups of at least two sources (a word that only one
source uses marks the source, not the topic). Logistic regression, L2-regularised, fitted with L-BFGS; every label
weighs the same and, inside a label, every source weighs the same, so a big source cannot set the boundary alone.
The weights are then pruned to the `max_features` largest and refitted. The threshold is the lowest one whose
precision on the validation split reaches `--target-precision`; the test split is not looked at here.
"""
from __future__ import annotations

import argparse
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import torch

from data_pipeline.filters.topic_model import LogisticTopicScorer, features, words
from tools.topic_eval.dataset import Example, read_examples
from tools.topic_eval.metrics import threshold_for_precision


def select_vocabulary(examples: list[Example], min_groups: int = 3, min_sources: int = 2) -> list[str]:
    groups: dict[str, set[str]] = defaultdict(set)
    sources: dict[str, set[str]] = defaultdict(set)
    for ex in examples:
        for token in set(words(ex.text)):
            groups[token].add(ex.group)
            sources[token].add(ex.source)
    return sorted(t for t, g in groups.items() if len(g) >= min_groups and len(sources[t]) >= min_sources)


def design_matrix(examples: list[Example], vocab: list[str]) -> torch.Tensor:
    index = {t: i for i, t in enumerate(vocab)}
    rows, cols, vals = [], [], []
    for r, ex in enumerate(examples):
        for token, value in features(words(ex.text), index).items():
            rows.append(r)
            cols.append(index[token])
            vals.append(value)
    return torch.sparse_coo_tensor(torch.tensor([rows, cols]), torch.tensor(vals, dtype=torch.float64),
                                   (len(examples), len(vocab)), check_invariants=True).coalesce()


def example_weights(examples: list[Example]) -> torch.Tensor:
    """Each label sums to 0.5, and within a label each source weighs the same."""
    per_source = Counter((ex.label, ex.source) for ex in examples)
    sources_per_label = Counter(label for label, _source in per_source)
    w = [0.5 / sources_per_label[ex.label] / per_source[(ex.label, ex.source)] for ex in examples]
    return torch.tensor(w, dtype=torch.float64)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, l2: float,
                 iterations: int = 200) -> tuple[torch.Tensor, float]:
    coef = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([coef, bias], max_iter=iterations, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = (x @ coef.unsqueeze(1)).squeeze(1) + bias
        loss = (w * torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
        loss = loss + l2 * (coef * coef).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return coef.detach(), float(bias.detach())


def train(train_set: list[Example], *, l2: float, max_features: int, min_groups: int) -> LogisticTopicScorer:
    vocab = select_vocabulary(train_set, min_groups=min_groups)
    y = torch.tensor([float(ex.label) for ex in train_set], dtype=torch.float64)
    w = example_weights(train_set)
    coef, bias = fit_logistic(design_matrix(train_set, vocab), y, w, l2)
    if len(vocab) > max_features:  # prune to the strongest words and refit on them alone
        keep = torch.topk(coef.abs(), max_features).indices.sort().values.tolist()
        vocab = [vocab[i] for i in keep]
        coef, bias = fit_logistic(design_matrix(train_set, vocab), y, w, l2)
    # rounded as the model file stores them, so the threshold is chosen on exactly the scores the file gives
    return LogisticTopicScorer(weights={t: round(w, 4) for t, w in zip(vocab, coef.tolist())}, bias=round(bias, 6))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("build/topic_eval"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--max-features", type=int, default=12000)
    parser.add_argument("--min-groups", type=int, default=3)
    parser.add_argument("--target-precision", type=float, default=0.95)
    args = parser.parse_args(argv)

    train_set, val_set = read_examples(args.data / "train.jsonl"), read_examples(args.data / "val.jsonl")
    scorer = train(train_set, l2=args.l2, max_features=args.max_features, min_groups=args.min_groups)
    val_scores = [scorer.score(ex.text) for ex in val_set]
    chosen = threshold_for_precision(val_scores, [ex.label for ex in val_set], args.target_precision)
    summary = json.loads((args.data / "summary.json").read_text())
    meta = {
        "trained_on": {"train_examples": len(train_set), "val_examples": len(val_set),
                       "sources": sorted({ex.source for ex in train_set})},
        "hyperparameters": {"l2": args.l2, "max_features": args.max_features, "min_groups": args.min_groups},
        "threshold": {"value": math.floor(chosen.threshold * 1e4) / 1e4,  # rounded down: keeps the chosen point
                      "target_precision_on_val": args.target_precision,
                      "val_precision": round(chosen.precision, 4), "val_recall": round(chosen.recall, 4)},
        "labelled_set_examples": summary["examples"],
    }
    scorer = LogisticTopicScorer(weights=scorer.weights, bias=scorer.bias, meta=meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scorer.save(args.out)
    print(json.dumps(meta, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, {len(scorer.weights)} words)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
