"""Pretraining FIM split (Bavarian et al. 2022; BigCode Megatron `permute`): two uniform character positions.

Each boundary is drawn from [0, len(text)] inclusive, so the prefix, the middle and the suffix can each be empty,
as in Megatron's `np_rng.randint(low=0, high=len(contents) + 1, size=2)`.
"""
from __future__ import annotations

import numpy as np

from data_pipeline.fim_types import FimSplit


def split_chars(text: str, rng: np.random.Generator) -> FimSplit:
    lo, hi = sorted(int(x) for x in rng.integers(0, len(text) + 1, size=2))
    return FimSplit(text[:lo], text[lo:hi], text[hi:], kind="chars")
