"""refact-eval's config (configs/eval/eval.yaml), typed: the top level and the section of every task to run go through
config_from_dict before the model loads, and the task runners read these objects, not the raw mapping.

Read raw, `allow_other_tokenizer='false'` and `humaneval_infill.single_line=no` were strings, truthy, that turned the
feature on; `heldout_fim.kinds=code` was split into the kinds c, o, d, e; `humaneval.temperature=true` sampled at 1.0;
`seed=1.7` was truncated to 1; a misspelt key (`+humaneval.temprature=0.8`) was ignored and the default used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from data_pipeline.config import config_from_dict
from data_pipeline.fim import ORDERS, SPM_VARIANTS, FimConfig


def _strings(where: str, values: list, allowed: tuple[str, ...] | None = None) -> None:
    """Each item a string (and one of `allowed`): a number in a list of stop sequences or kinds is refused here."""
    for value in values:
        if not isinstance(value, str) or (allowed is not None and value not in allowed):
            wanted = f"one of {allowed}" if allowed is not None else "strings"
            raise ValueError(f"{where}: expected a list of {wanted}, got {list(values)}")


def _one_of(where: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{where} must be one of {allowed}, got {value!r}")


def at_least(where: str, section: object, **least: int) -> None:
    """A count of `section` below its least value, named `where` + `key=value` (null, where the type allows it, is
    not checked): 0 or -1 ran nothing, everything, or all but the last, silently."""
    for key, low in least.items():
        value = getattr(section, key)
        if value is not None and value < low:
            raise ValueError(f"{where}{key}={value}: expected an integer >= {low}")


def _temperature(where: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):  # nan sampled garbage; below 0 was greedy, silently
        raise ValueError(f"{where}.temperature must be a finite number >= 0 (0: greedy), got {value}")


@dataclass(frozen=True)
class EvalOptions:
    """The top-level keys; each task's section is checked by its own class, and only when the task runs."""

    model: str
    tokenizer: str | None = None
    allow_other_tokenizer: bool = False
    tasks: list = field(default_factory=list)
    out: str = "eval_results.json"
    limit: int | None = None
    data: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0
    cpu_threads: int | None = None
    generation: dict = field(default_factory=dict)
    sandbox: dict = field(default_factory=dict)
    humaneval: dict = field(default_factory=dict)
    humaneval_chat: dict = field(default_factory=dict)
    humaneval_infill: dict = field(default_factory=dict)
    heldout_fim: dict = field(default_factory=dict)
    perplexity: dict = field(default_factory=dict)
    published: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _strings("config.tasks", self.tasks)
        at_least("", self, limit=1, cpu_threads=1)  # limit=0 ran every problem, cpu_threads=0 torch's default


@dataclass(frozen=True)
class _Sampled:
    """What the two pass@k tasks share: samples per problem, scored at each k."""

    name: ClassVar[str]
    data: str | None = None
    temperature: float = 0.0
    num_samples: int = 1
    k: list = field(default_factory=lambda: [1])
    max_new_tokens: int = 384

    def __post_init__(self) -> None:
        _temperature(self.name, self.temperature)
        at_least(f"{self.name}.", self, num_samples=1, max_new_tokens=1)
        if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in self.k):
            raise ValueError(f"{self.name}.k={list(self.k)}: expected integers >= 1 (pass@k for each)")


@dataclass(frozen=True)
class HumanEvalSection(_Sampled):
    """`humaneval.*`: completion, cut at the stop sequences."""

    name: ClassVar[str] = "humaneval"
    stop_sequences: list = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        _strings("humaneval.stop_sequences", self.stop_sequences)


@dataclass(frozen=True)
class HumanEvalChatSection(_Sampled):
    """`humaneval_chat.*`: the problem asked in the chat format; `query` holds {prompt}."""

    name: ClassVar[str] = "humaneval_chat"
    max_new_tokens: int = 512
    system: str = ""
    query: str = "{prompt}"

    def __post_init__(self) -> None:
        super().__post_init__()
        try:  # formatted per problem after the model is loaded: a KeyError traceback there
            self.query.format(prompt="")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"humaneval_chat.query={self.query!r}: not a format string with only {{prompt}} in "
                             f"braces ({type(err).__name__}: {err}); write a literal brace as {{{{ or }}}}") from None


@dataclass(frozen=True)
class InfillSection:
    """`humaneval_infill.*`: single-line infilling in each of `orders`."""

    data: str | None = None
    orders: list = field(default_factory=lambda: ["psm"])
    spm_variant: str = "served"
    single_line: bool = True
    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        _strings("humaneval_infill.orders", self.orders, ORDERS)  # orders=psm ran the orders p, s, m
        at_least("humaneval_infill.", self, max_new_tokens=1)
        _one_of("humaneval_infill.spm_variant", self.spm_variant, SPM_VARIANTS)


@dataclass(frozen=True)
class HeldoutFimSection:
    """`heldout_fim.*`: FIM on the held-out files of a pipeline output; `fim` holds FimConfig fields."""

    kinds: list = field(default_factory=lambda: ["code"])
    samples_per_document: int = 4
    seed: int = 1234
    order: str = "psm"
    spm_variant: str = "served"
    max_new_tokens: int = 128
    fim: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _strings("heldout_fim.kinds", self.kinds)
        _one_of("heldout_fim.order", self.order, ORDERS)
        _one_of("heldout_fim.spm_variant", self.spm_variant, SPM_VARIANTS)
        at_least("heldout_fim.", self, samples_per_document=1, max_new_tokens=1)
        self.fim_config()  # a bad fim section now, not after the model has loaded

    def fim_config(self) -> FimConfig:
        return FimConfig.from_dict({"mode": "finetune", **self.fim})


@dataclass(frozen=True)
class PerplexitySection:
    """`perplexity.*`: windows of `context` tokens (null: the model's n_positions) of the valid split."""

    context: int | None = None
    batch_size: int = 4
    max_windows: int | None = None

    def __post_init__(self) -> None:
        at_least("perplexity.", self, context=2, batch_size=1, max_windows=1)  # context=1: ZeroDivisionError


SECTIONS = {"humaneval": HumanEvalSection, "humaneval_chat": HumanEvalChatSection, "humaneval_infill": InfillSection,
            "heldout_fim": HeldoutFimSection, "perplexity": PerplexitySection}


def eval_options(values: Mapping[str, Any]) -> tuple[EvalOptions, dict[str, Any]]:
    """(the top-level options, {task: its typed section}) of a resolved config, for the tasks it runs."""
    options = config_from_dict(EvalOptions, values, "config")
    return options, {t: config_from_dict(SECTIONS[t], values.get(t), t) for t in options.tasks if t in SECTIONS}
