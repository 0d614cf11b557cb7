"""Early dropout (Liu et al. 2023, "Dropout Reduces Underfitting"): dropout only at the start of training."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EarlyDropoutConfig:
    rate: float = 0.0          # dropout during the early phase; 0 disables
    until_step: int = 0        # dropout is off from this step on (or from until_tokens, whichever is set)
    until_tokens: int = 0      # alternative to until_step: counted in training tokens; 0 = unused
    ramp: str = "none"         # none (constant then off) | linear (rate decays linearly to 0 at the end)

    def __post_init__(self) -> None:
        # checked with the config, before any work: a bad ramp stopped the run at its first step, a rate of 1.5 when
        # the model was built (ranges of the model's own dropout: refact_train/model/config.py)
        if self.ramp not in ("none", "linear"):
            raise ValueError(f"early_dropout.ramp must be none or linear, got {self.ramp!r}")
        if not 0 <= self.rate < 1:
            raise ValueError(f"early_dropout.rate must be in [0, 1), got {self.rate}")
        if self.until_step < 0 or self.until_tokens < 0:
            raise ValueError(f"early_dropout.until_step and until_tokens must be >= 0, got {self.until_step} and "
                             f"{self.until_tokens}")


def dropout_at(step: int, tokens_seen: int, cfg: EarlyDropoutConfig) -> float:
    """The dropout rate for the step about to run."""
    if cfg.rate <= 0:
        return 0.0
    if cfg.until_tokens > 0:
        progress, end = tokens_seen, cfg.until_tokens
    else:
        progress, end = step, cfg.until_step
    if progress >= end:
        return 0.0
    if cfg.ramp == "linear":
        return cfg.rate * (1.0 - progress / end)
    return cfg.rate


def phase(rate: float) -> str:
    return "early" if rate > 0 else "off"
