"""The stage registry: every stage of the pipeline in run order, built from its config section.

A stage's section is the config node of its name (`license: {...}`), and `enabled: false` in it turns the stage off;
tokenization reads the tokenizer, mixture, holdout and shards nodes and is on when a tokenizer is given or trained.
Each module exposes `build_stage(section) -> Stage`, which checks the section before any work.
"""
from __future__ import annotations

from typing import Any, Callable

from data_pipeline import tokenization
from data_pipeline.dedup import exact, near_dedup
from data_pipeline.filters import decontam, english, license, quality, topic
from data_pipeline.sources import ingest
from data_pipeline.stage import Stage


def own_section(name: str) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    def section(cfg: dict[str, Any]) -> dict[str, Any] | None:
        node = cfg.get(name)
        if not isinstance(node, dict):
            return None
        enabled = node.get("enabled", True)
        if not isinstance(enabled, bool):  # a quoted 'false' is a non-empty string: the stage ran, silently
            raise ValueError(f"{name}.enabled: expected true or false, got {enabled!r}")
        return dict(node) if enabled else None
    return section


# name -> (builder, the section it is built from: None when the stage is off), in run order
STAGES: dict[str, tuple[Callable[[dict[str, Any]], Stage], Callable[[dict[str, Any]], dict[str, Any] | None]]] = {
    "ingest": (ingest.build_stage, own_section("ingest")),
    "license": (license.build_stage, own_section("license")),
    "quality": (quality.build_stage, own_section("quality")),
    "english": (english.build_stage, own_section("english")),
    "topic": (topic.build_stage, own_section("topic")),
    "decontam": (decontam.build_stage, own_section("decontam")),
    "exact_dedup": (exact.build_stage, own_section("exact_dedup")),
    "near_dedup": (near_dedup.build_stage, own_section("near_dedup")),
    "tokenize": (tokenization.build_stage, tokenization.config_section),
}
STAGE_ORDER = tuple(STAGES)
# How to turn on a stage that is off, for the message of `stage=NAME`.
TURN_ON = {"tokenize": "stage=tokenize needs tokenizer=PATH or tokenizer.train=true"}


def stage_section(cfg: dict[str, Any], name: str) -> dict[str, Any] | None:
    return STAGES[name][1](cfg)


def build_stage(name: str, section: dict[str, Any]) -> Stage:
    return STAGES[name][0](section)
