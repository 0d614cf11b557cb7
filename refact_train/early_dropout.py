"""Early dropout (Liu et al. 2023, "Dropout Reduces Underfitting"): dropout only at the start of training."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EarlyDropoutConfig:
    rate: float = 0.0          # dropout during the early phase; 0 disables
    until_step: int = 0        # dropout is off from this step on (or from until_tokens, whichever is set)
    until_tokens: int = 0      # alternative to until_step: counted in training tokens; 0 = unused
    ramp: str = "none"         # none (constant then off) | linear (rate decays linearly to 0 at the end)


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
    if cfg.ramp != "none":
        raise ValueError(f"early_dropout.ramp={cfg.ramp!r}: expected none or linear")
    return cfg.rate


def phase(rate: float) -> str:
    return "early" if rate > 0 else "off"
