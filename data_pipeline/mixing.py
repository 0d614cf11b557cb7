"""Which documents go to the train and valid splits, and how many times each goes into train.

Mixture weights are per group (a document's `kind` or `source`): a weight above 1 repeats documents, below 1
subsamples them. Every decision is a pure function of (seed, document id), so it does not depend on the order of the
inputs or on the number of workers. The release mixed text:code 50:50 by tokens: `shares` computes the weights that
reach given token shares while keeping the total number of tokens.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import xxhash

from data_pipeline.config import DataError, config_from_dict

GROUP_BY = ("kind", "source")


@dataclass(frozen=True)
class MixtureConfig:
    by: str = "kind"  # "kind" | "source": what a weight is keyed by
    weights: Mapping[str, float] = field(default_factory=dict)  # explicit weight per group
    shares: Mapping[str, float] = field(default_factory=dict)  # or target token share per group (normalised)
    default_weight: float = 1.0  # groups that `weights` does not name
    seed: int = 0  # subsampling of fractional weights and the document order of the train split

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", {str(k): float(v) for k, v in dict(self.weights or {}).items()})
        object.__setattr__(self, "shares", {str(k): float(v) for k, v in dict(self.shares or {}).items()})
        if self.by not in GROUP_BY:
            raise ValueError(f"mixture.by must be one of {GROUP_BY}, got {self.by!r}")
        if self.weights and self.shares:
            raise ValueError("mixture: give either `weights` or `shares`, not both")
        bad = {k: v for k, v in {**self.weights, **self.shares}.items() if not (v >= 0 and math.isfinite(v))}
        if bad or not (self.default_weight >= 0 and math.isfinite(self.default_weight)):  # NaN fails both
            raise ValueError(f"mixture: weights and shares must be finite and >= 0, got {bad or self.default_weight}")
        if self.shares and sum(self.shares.values()) <= 0:
            raise ValueError(f"mixture.shares must not all be zero: {self.shares}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "MixtureConfig":
        return config_from_dict(cls, values, "mixture")


@dataclass(frozen=True)
class HoldoutConfig:
    fraction: float = 0.0  # share of documents held out for the valid split (and DIR/heldout/)
    max_documents: int | None = None  # cap: the held-out candidates with the smallest hashes are kept
    kinds: tuple[str, ...] = ("code", "text")  # only documents of these kinds are held out
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"holdout.fraction must be within [0, 1], got {self.fraction!r}")
        if self.max_documents is not None and self.max_documents < 0:
            raise ValueError(f"holdout.max_documents must be >= 0 or null, got {self.max_documents!r}")
        if set(self.kinds) - {"code", "text"}:  # holdout.kinds=[txt] held out nothing, without a word
            raise ValueError(f"holdout.kinds must name code and/or text, got {list(self.kinds)}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "HoldoutConfig":
        return config_from_dict(cls, values, "holdout")


def uniform_hash(seed: int, key: str, salt: str) -> float:
    """A uniform number in [0, 1) that depends only on (seed, salt, key)."""
    return xxhash.xxh64_intdigest(f"{salt}\0{key}".encode("utf-8", "surrogatepass"), seed=seed) / 2.0**64


def holdout_score(doc_id: str, cfg: HoldoutConfig) -> float:
    """A document is a held-out candidate when its score is below `cfg.fraction`."""
    return uniform_hash(cfg.seed, doc_id, "holdout")


def compute_weights(tokens_by_group: Mapping[str, int], cfg: MixtureConfig) -> tuple[dict[str, float], list[str]]:
    """Weight per group present in `tokens_by_group`, and the groups that `weights` or `shares` names but the data
    lacks (a typo, or a group another stage dropped: warned, and recorded in the manifest).

    With `shares`, weight_g = share_g * T / tokens_g (T = all tokens), so the total stays T and group g makes up
    share_g of it; shares are renormalised over the groups that have tokens. Weights that leave no train token
    are refused: the trainer could not start on what they build.
    """
    present = {g: int(t) for g, t in tokens_by_group.items() if t > 0}
    if not cfg.shares:
        weights = {g: cfg.weights.get(g, cfg.default_weight) for g in tokens_by_group}
        if present and not any(weights[g] > 0 for g in present):
            raise DataError(f"mixture (by {cfg.by}) gives weight 0 to every group of the data {sorted(present)}: no "
                             f"train document would be written; give one a weight > 0")
        missing = sorted(g for g in cfg.weights if g not in present)  # `kode: 0` would keep all the code
        if missing:
            warnings.warn(f"mixture.weights (by {cfg.by}) names {missing}, which the data lacks (it has "
                          f"{sorted(present)})")
        return weights, missing
    unnamed = sorted(set(present) - set(cfg.shares))
    if unnamed:
        raise DataError(f"mixture.shares (by {cfg.by}) names {sorted(cfg.shares)} but the data also has "
                         f"{unnamed}; add a share for each (0 drops a group)")
    missing = sorted(g for g, s in cfg.shares.items() if s > 0 and g not in present)
    if missing:
        warnings.warn(f"mixture.shares: no tokens of {missing}; shares are renormalised over {sorted(present)}")
    total_share = sum(cfg.shares[g] for g in present)
    if total_share <= 0:
        raise DataError(f"mixture.shares gives zero share to every group present in the data: {sorted(present)}")
    total = sum(present.values())
    weights = {g: cfg.shares[g] / total_share * total / present[g] for g in present}
    weights.update({g: 0.0 for g in tokens_by_group if g not in present})
    return weights, missing
