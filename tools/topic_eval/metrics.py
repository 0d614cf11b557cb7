"""Precision / recall of a score threshold, and the threshold that reaches a target precision."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Counts:
    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def counts_at(scores: Sequence[float], labels: Sequence[int], threshold: float) -> Counts:
    """An example is predicted computer science when its score >= threshold."""
    n = Counter((score >= threshold, bool(label)) for score, label in zip(scores, labels))
    return Counts(threshold, n[True, True], n[True, False], n[False, True], n[False, False])


def threshold_for_precision(scores: Sequence[float], labels: Sequence[int], target: float) -> Counts:
    """The lowest threshold (so the highest recall) whose precision is >= target; threshold 1.0 if none is.

    One sweep from the highest score down: at each distinct score the counts of the examples at or above it."""
    pairs = sorted(zip(scores, labels), key=lambda p: -p[0])
    positives = sum(1 for _, label in pairs if label)
    negatives = len(pairs) - positives
    best = Counts(1.0, 0, 0, positives, negatives)
    tp = fp = 0
    for i, (score, label) in enumerate(pairs):
        tp, fp = tp + bool(label), fp + (not label)
        if i + 1 < len(pairs) and pairs[i + 1][0] == score:
            continue  # ties: all examples with this score are on the same side of the threshold
        if tp and tp / (tp + fp) >= target:
            best = Counts(score, tp, fp, positives - tp, negatives - fp)
    return best
