"""The offline computer-science-topic scorer: a logistic regression over word counts, shipped as a small JSON file.

Features: lowercase words (`[a-z][a-z0-9_]+`) counted in the text, log(1 + count) per vocabulary word, the vector
L2-normalised (so a paragraph and a book score on the same scale). Score = sigmoid(bias + weights . features), the
probability that the text is about computer science. A text without a single vocabulary word scores 0.

The model file is written by `tools.topic_eval.train` from the labelled set that
`scripts/build_topic_eval_set.py` builds; docs/filters.md says how it was trained and how well it does.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL_FORMAT = "refact-topic-logreg/1"
DEFAULT_MODEL_PATH = Path(__file__).parent / "models" / "topic_cs_logreg.json"
_WORD = re.compile(r"[a-z][a-z0-9_]+")


def words(text: str) -> list[str]:
    """The tokens the scorer sees (shared with training, so both featurise text the same way)."""
    return _WORD.findall(text.lower())


def features(tokens: list[str], vocabulary: dict[str, Any] | None = None) -> dict[str, float]:
    """log(1 + count) of each token (restricted to `vocabulary` when given), L2-normalised; {} when none is left."""
    counts = Counter(t for t in tokens if vocabulary is None or t in vocabulary)
    values = {t: math.log1p(c) for t, c in counts.items()}
    norm = math.sqrt(sum(v * v for v in values.values()))
    return {t: v / norm for t, v in values.items()} if norm else {}


@dataclass(frozen=True)
class LogisticTopicScorer:
    """score(text) -> probability in [0, 1] that `text` is about computer science."""

    weights: dict[str, float]
    bias: float
    max_chars: int = 100_000  # only the first max_chars characters are read: bounded time on huge documents
    meta: dict[str, Any] = field(default_factory=dict)
    name: str = "logreg"

    def score(self, text: str) -> float:
        feats = features(words(text[: self.max_chars]), self.weights)
        if not feats:
            return 0.0
        z = self.bias + sum(self.weights[t] * v for t, v in feats.items())
        return 1.0 / (1.0 + math.exp(-z)) if z > -500 else 0.0

    def save(self, path: str | Path) -> None:
        weights = {t: round(w, 4) for t, w in sorted(self.weights.items())}
        payload = {"format": MODEL_FORMAT, "bias": round(self.bias, 6), "meta": self.meta, "weights": weights}
        Path(path).write_text(json.dumps(payload, separators=(",", ":"), ensure_ascii=True) + "\n")

    @classmethod
    def load(cls, path: str | Path | None = None, max_chars: int = 100_000) -> "LogisticTopicScorer":
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise ValueError(f"topic.scorer.max_chars must be an integer >= 1, got {max_chars!r}")
        path = Path(path) if path else DEFAULT_MODEL_PATH
        if not path.is_file():
            raise FileNotFoundError(f"topic model {path} does not exist: set topic.scorer.path to a model file "
                                    f"written by `python -m tools.topic_eval.train`")
        payload = json.loads(path.read_text())
        if payload.get("format") != MODEL_FORMAT:
            raise ValueError(f"topic model {path}: format {payload.get('format')!r}, expected {MODEL_FORMAT!r}")
        return cls(weights={str(k): float(v) for k, v in payload["weights"].items()}, bias=float(payload["bias"]),
                   max_chars=max_chars, meta=payload.get("meta", {}))


def load_logreg_scorer(path: str | None = None, max_chars: int = 100_000) -> LogisticTopicScorer:
    """Config entry point (`topic.scorer._target_`): the shipped model when `path` is null."""
    return LogisticTopicScorer.load(path, max_chars=max_chars)
