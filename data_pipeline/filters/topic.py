"""Computer-science topic filter: keep natural-language documents whose topic score reaches the threshold.

The scorer is pluggable: anything with `score(text: str) -> float` (higher = more computer science) built by the
config's `topic.scorer` node through Hydra's `instantiate` (`_target_` plus its arguments). The default is the
shipped logistic-regression model (`data_pipeline.filters.topic_model`), whose precision and recall on a held-out
labelled set are in docs/filters.md. A stronger classifier replaces it by naming its own `_target_`.
Drop reason: `off_topic:<score to 2 decimals>`. Config: configs/pipeline/topic/.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Protocol, runtime_checkable

from data_pipeline.config import config_from_dict
from data_pipeline.records import Document
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

    node = dict(node or DEFAULT_SCORER)
    if "_target_" not in node:
        raise ValueError(f"topic.scorer needs a `_target_` (a callable that returns a scorer), got keys {sorted(node)}")
    scorer = instantiate(node, _convert_="all")
    if not isinstance(scorer, TopicScorer):
        raise TypeError(f"topic.scorer._target_={node['_target_']} returned {type(scorer).__name__}, "
                        f"which has no score(text) -> float method")
    return scorer


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
        return replace(checked, scorer=build_scorer(section.get("scorer")), threshold=float(checked.threshold),
                       kinds=tuple(checked.kinds))

    def __call__(self, doc: Document) -> str | None:
        """None keeps `doc`; otherwise the drop reason."""
        if doc.kind not in self.kinds:
            return None
        if len(doc.text.split(None, max(self.min_words - 1, 0))) < self.min_words:  # stops after min_words words
            return None if self.short_text == "keep" else "off_topic:too_short"
        score = self.scorer.score(doc.text)
        return None if score >= self.threshold else f"off_topic:{score:.2f}"


def build_stage(section: dict[str, Any]) -> Stage:
    return filter_stage("topic", TopicFilter.from_config, section)
