"""The unbiased pass@k estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code")."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c of them correct) passes.

    1 - C(n-c, k) / C(n, k), computed as a stable product: 1 - prod_{i=n-c+1}^{n} (1 - k/i).
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k} (draw at least k samples per problem)")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(samples: Sequence[int], correct: Sequence[int], ks: Iterable[int]) -> dict[str, float | None]:
    """Average pass@k over problems; a k larger than the smallest sample count is reported as None."""
    if len(samples) != len(correct):
        raise ValueError("mean_pass_at_k: samples and correct must have one entry per problem")
    out: dict[str, float | None] = {}
    for k in ks:
        if not samples or min(samples) < k:
            out[f"pass@{k}"] = None
            continue
        out[f"pass@{k}"] = float(np.mean([pass_at_k(n, c, k) for n, c in zip(samples, correct)]))
    return out
