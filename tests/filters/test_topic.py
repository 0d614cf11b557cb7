"""Computer-science topic filter: the shipped model, its ranking of real text, config thresholds, pluggable scorers."""
import argparse
import collections
import functools
import heapq
import json
import subprocess
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from data_pipeline.filters.topic import TopicFilter, build_scorer
from data_pipeline.filters.topic_model import DEFAULT_MODEL_PATH, MODEL_FORMAT, LogisticTopicScorer
from data_pipeline.records import Document
from data_pipeline.config import config_dir

# Real computer-science prose: docstrings of Python's standard library (not in the scorer's training set).
CS_PARAGRAPHS = [heapq.__doc__, argparse.__doc__, subprocess.__doc__, json.__doc__, json.dumps.__doc__,
                 subprocess.run.__doc__, functools.lru_cache.__doc__, collections.namedtuple.__doc__]
# Real general prose: opening paragraphs of public-domain books and a speech (tests/filters/data/README.md).
PROSE_PARAGRAPHS = (Path(__file__).parent / "data" / "prose_public_domain.txt").read_text().strip().split("\n\n")


def text(body: str) -> Document:
    return Document(id="t", text=body, kind="text", lang="markdown", source="test")


def default_config() -> dict:
    return OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "pipeline" / "topic" / "default.yaml"))


@pytest.fixture(scope="module")
def default_filter() -> TopicFilter:
    return TopicFilter.from_config(default_config())


def test_shipped_model_loads_offline_and_is_small():
    payload = json.loads(DEFAULT_MODEL_PATH.read_text())
    assert payload["format"] == MODEL_FORMAT
    assert DEFAULT_MODEL_PATH.stat().st_size < 1024 * 1024
    scorer = LogisticTopicScorer.load()
    assert len(scorer.weights) > 1000 and scorer.meta["threshold"]["target_precision_on_val"] >= 0.9
    # the config's threshold is the one chosen on the validation split (rounded up, never looser)
    assert default_config()["threshold"] >= scorer.meta["threshold"]["value"]


def test_scorer_ranks_cs_paragraphs_above_prose(default_filter):
    cs = [default_filter.scorer.score(p) for p in CS_PARAGRAPHS]
    prose = [default_filter.scorer.score(p) for p in PROSE_PARAGRAPHS]
    assert min(cs) > max(prose), (cs, prose)
    assert all(s >= default_filter.threshold for s in cs)
    assert all(s < default_filter.threshold for s in prose)


def test_filter_keeps_cs_drops_prose_with_reason(default_filter):
    assert default_filter(text(argparse.__doc__)) is None
    reason = default_filter(text(PROSE_PARAGRAPHS[0]))
    assert reason is not None and reason.startswith("off_topic:")
    assert 0.0 <= float(reason.split(":")[1]) < default_filter.threshold


def test_threshold_kinds_and_short_texts_from_config():
    cfg = default_config()
    assert TopicFilter.from_config({**cfg, "threshold": 0.0})(text(PROSE_PARAGRAPHS[0])) is None
    assert TopicFilter.from_config({"topic": {**cfg, "threshold": 1.01}})(text(argparse.__doc__)) is not None
    code = Document(id="c", text=PROSE_PARAGRAPHS[0], kind="code", lang="python", source="test")
    assert TopicFilter.from_config(cfg)(code) is None  # code is not judged by default
    short = text("Once upon a time there was a king.")
    assert TopicFilter.from_config(cfg)(short) is None
    assert TopicFilter.from_config({**cfg, "short_text": "drop"})(short) == "off_topic:too_short"


def test_scorer_is_pluggable_through_target():
    lexicon = {"_target_": "data_pipeline.filters.topic_model.LogisticTopicScorer",
               "weights": {"king": 5.0, "queen": 5.0}, "bias": -1.0}
    scorer = build_scorer(lexicon)
    assert scorer.score("The king and the queen") > 0.9 and scorer.score("a compiler") == 0.0
    topic = TopicFilter.from_config({"threshold": 0.5, "min_words": 1, "scorer": lexicon})
    assert topic(text("the king spoke")) is None and topic(text("the compiler spoke")) == "off_topic:0.00"
    with pytest.raises(TypeError, match="score"):
        build_scorer({"_target_": "builtins.dict"})


def test_bad_config_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="treshold"):
        TopicFilter.from_config({"treshold": 0.5})
    with pytest.raises(ValueError, match="threshold is missing"):
        TopicFilter.from_config({"kinds": ["text"]})
    with pytest.raises(InstantiationException, match="topic.scorer.path"):
        TopicFilter.from_config({"threshold": 0.5, "scorer": {
            "_target_": "data_pipeline.filters.topic_model.load_logreg_scorer", "path": str(tmp_path / "none.json")}})


class _Scorer:
    def __init__(self, value):
        self.value = value

    def score(self, text):
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


@pytest.mark.parametrize("value,message", [(float("nan"), "returned nan"), ("high", "returned 'high'"),
                                           (None, "returned None"), (RuntimeError("no model"), "raised RuntimeError")])
def test_a_scorer_that_gives_no_number_is_refused_before_any_work(value, message):
    # before: every document of the run dropped as off_topic:nan, or as error:TypeError / error:RuntimeError
    node = {"_target_": f"{__name__}._Scorer", "value": value}
    with pytest.raises(ValueError, match=message):
        TopicFilter.from_config({"threshold": 0.5, "scorer": node})


def test_a_nan_score_on_one_document_is_an_error_not_off_topic():
    topic = TopicFilter(_Scorer(float("nan")), threshold=0.5, min_words=1)
    with pytest.raises(ValueError, match="returned nan for document 't'"):
        topic(text("a text the scorer cannot score"))


@pytest.mark.parametrize("section,message", [
    ({"threshold": float("nan")}, "finite"),  # NaN dropped every document
    ({"threshold": 0.5, "kinds": ["txt"]}, "no document kind"),
    ({"threshold": 0.5, "scorer": "data_pipeline.filters.topic_model.load_logreg_scorer"}, "must be a mapping"),
])
def test_bad_threshold_kinds_or_scorer_node_are_named(section, message):
    with pytest.raises(ValueError, match=message):
        TopicFilter.from_config(section)


def test_scorer_max_chars_below_one_is_refused():
    with pytest.raises(ValueError, match="max_chars must be an integer >= 1"):  # scored text[:-1] before
        LogisticTopicScorer.load(max_chars=-1)
