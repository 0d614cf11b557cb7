"""Computer-science topic filter: keep natural-language documents whose topic score reaches the threshold.

The scorer is pluggable: anything with `score(text: str) -> float` (higher = more computer science) built by the
config's `topic.scorer` node through Hydra's `instantiate` (`_target_` plus its arguments). The default is the
shipped logistic-regression model (`data_pipeline.filters.topic_model`), whose precision and recall on a held-out
labelled set are in docs/filters.md. A stronger classifier replaces it by naming its own `_target_`.
Drop reason: `off_topic:<score to 2 decimals>`. Config: configs/pipeline/topic/.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Any, Mapping, Protocol, runtime_checkable

from data_pipeline.config import config_from_dict
from data_pipeline.records import KINDS, Document
from data_pipeline.stage import Stage, filter_stage

DEFAULT_SCORER = {"_target_": "data_pipeline.filters.topic_model.load_logreg_scorer", "path": None}


@runtime_checkable
class TopicScorer(Protocol):
    def score(self, text: str) -> float:
        """How much `text` is about computer science, in the units the configured threshold uses."""
        ...


def build_scorer(node: Mapping[str, Any] | None) -> TopicScorer:
    """A scorer from a config node with `_target_` (Hydra instantiate); the shipped model when node is None."""
    from hydra.utils import instantiate

    if node is not None and not isinstance(node, Mapping):
        raise ValueError(f"topic.scorer must be a mapping with a `_target_`, got {node!r}")
    node = dict(node or DEFAULT_SCORER)
    if "_target_" not in node:
        raise ValueError(f"topic.scorer needs a `_target_` (a callable that returns a scorer), got keys {sorted(node)}")
    scorer = instantiate(node, _convert_="all")
    if not isinstance(scorer, TopicScorer):
        raise TypeError(f"topic.scorer._target_={node['_target_']} returned {type(scorer).__name__}, "
                        f"which has no score(text) -> float method")
    # one score now: a scorer that raises or returns no number would otherwise drop every document of the run
    # (as error:<type>, or off_topic:nan)
    try:
        probe = scorer.score(_PROBE)
    except Exception as exc:
        raise ValueError(f"topic.scorer._target_={node['_target_']}: score(text) raised {type(exc).__name__}: "
                         f"{exc}") from exc
    if not _is_score(probe):
        raise ValueError(f"topic.scorer._target_={node['_target_']}: score(text) returned {probe!r}, not a finite "
                         f"number")
    return scorer


_PROBE = "A compiler parses the source code into a syntax tree, checks the types and emits machine instructions."


def _is_score(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TopicFilter:
    scorer: TopicScorer
    threshold: float | None  # None only while the section is checked: from_config refuses a missing one
    kinds: tuple[str, ...] = ("text",)
    min_words: int = 20
    short_text: str = "keep"  # keep | drop

    def __post_init__(self) -> None:
        if self.short_text not in ("keep", "drop"):
            raise ValueError(f"topic.short_text must be 'keep' or 'drop', got {self.short_text!r}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "TopicFilter":
        """Build from the `topic` config section (the whole pipeline config is accepted too)."""
        section = dict(cfg.get("topic", cfg))
        section.pop("enabled", None)
        # the keys first, before the scorer loads its model
        checked = config_from_dict(cls, {"threshold": None, **section, "scorer": None}, "topic")
        if checked.threshold is None:
            raise ValueError("topic.threshold is missing: set it in configs/pipeline/topic/default.yaml")
        if not math.isfinite(checked.threshold):  # NaN dropped every document, inf every one too
            raise ValueError(f"topic.threshold must be a finite number, got {checked.threshold}")
        if set(checked.kinds) - set(KINDS):
            raise ValueError(f"topic.kinds: {sorted(set(checked.kinds) - set(KINDS))} is no document kind; use {KINDS}")
        return replace(checked, scorer=build_scorer(section.get("scorer")), threshold=float(checked.threshold),
                       kinds=tuple(checked.kinds))

    def __call__(self, doc: Document) -> str | None:
        """None keeps `doc`; otherwise the drop reason."""
        if doc.kind not in self.kinds:
            return None
        if len(doc.text.split(None, max(self.min_words - 1, 0))) < self.min_words:  # stops after min_words words
            return None if self.short_text == "keep" else "off_topic:too_short"
        score = self.scorer.score(doc.text)
        if not _is_score(score):  # the stage records the document as error:ValueError, not as off topic
            raise ValueError(f"topic scorer returned {score!r} for document {doc.id!r}")
        return None if score >= self.threshold else f"off_topic:{score:.2f}"


def build_stage(section: dict[str, Any]) -> Stage:
    return filter_stage("topic", TopicFilter.from_config, section)
