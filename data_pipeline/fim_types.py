"""The FIM configuration, the split record and the seeded random source shared by both FIM modes.

`data_pipeline.fim` is the public face; this module only holds the types so that `fim_pretrain` and `fim_finetune`
can use them without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from data_pipeline.config_check import config_from_dict

MODES = ("pretrain", "finetune")
SPM_VARIANTS = ("served", "paper")
# FIMv2 splitters of the release's fine-tuning pipeline (REFACT-1.6B.md), in the order of `splitter_probs`.
SPLITTERS = ("inside_row", "to_end_of_row", "multi_row")


@dataclass(frozen=True)
class FimConfig:
    """How documents become fill-in-the-middle samples (api.md, "FIM").

    mode "pretrain": the FIM paper / BigCode Megatron, two uniform character positions per document.
    mode "finetune": the release's FIMv2, line-aware middles; `splitter_probs` weighs `SPLITTERS`.
    """

    mode: str = "pretrain"
    rate: float = 0.5  # probability that a document becomes a FIM sample (0.9 per file in the release's fine-tuning)
    spm_rate: float = 0.5  # share of FIM samples in SPM order, the rest PSM
    spm_variant: str = "served"  # "served": <fim_suffix>s<fim_prefix>p<fim_middle>m ; "paper": <fim_prefix><fim_suffix>s<fim_middle>pm
    empty_middle_rate: float = 0.0  # finetune mode: share of FIM samples whose middle is empty
    loss_on_sentinels: bool = True  # False: the loss mask is False on <fim_prefix>, <fim_suffix>, <fim_middle>
    splitter_probs: tuple[float, float, float] = (0.05, 0.5, 0.45)  # inside_row, to_end_of_row, multi_row
    max_middle_rows: int = 32  # multi_row: look this far for a blank line / smaller indent, else 1..this many rows

    def __post_init__(self) -> None:
        # Hydra hands lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "splitter_probs", tuple(float(p) for p in self.splitter_probs))
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.spm_variant not in SPM_VARIANTS:
            problems.append(f"spm_variant must be one of {SPM_VARIANTS}, got {self.spm_variant!r}")
        for name in ("rate", "spm_rate", "empty_middle_rate"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                problems.append(f"{name} must be within [0, 1], got {value!r}")
        probs = self.splitter_probs
        if len(probs) != len(SPLITTERS) or any(p < 0 for p in probs) or sum(probs) <= 0:
            problems.append(f"splitter_probs must be {len(SPLITTERS)} non-negative weights for {SPLITTERS}, "
                            f"got {probs!r}")
        if int(self.max_middle_rows) < 1:
            problems.append(f"max_middle_rows must be >= 1, got {self.max_middle_rows!r}")
        if problems:
            raise ValueError("FimConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "FimConfig":
        """Build from a config section (plain dict or OmegaConf), naming any key that is not a field."""
        return config_from_dict(cls, values, "FimConfig")


@dataclass(frozen=True)
class FimSplit:
    """One document cut in three; `prefix + middle + suffix` is the document, always."""

    prefix: str
    middle: str
    suffix: str
    kind: str = "chars"  # which splitter made it: "chars" (pretrain), a SPLITTERS name, or "empty_middle"

    @property
    def text(self) -> str:
        return self.prefix + self.middle + self.suffix


def fim_rng(seed: int, index: int) -> np.random.Generator:
    """The random source of sample `index` under `seed`: the same pair always gives the same draws."""
    if seed < 0 or index < 0:
        raise ValueError(f"fim_rng: seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(index), 0xF1A])))
