"""The labelled-set machinery: markup stripping, chunking, honest splits, threshold choice, and a real small training."""
import argparse
import gzip
import json
import logging
import random
import subprocess
import threading
from pathlib import Path

from tools.topic_eval.dataset import TEST_ONLY_SOURCES, Example, build_examples, chunk_group, split_of
from tools.topic_eval.markup import roff_to_text, rst_to_text, wiki_categories, wiki_to_text
from tools.topic_eval.metrics import counts_at, threshold_for_precision
from tools.topic_eval.sources import RawDoc, dictd_entries
from tools.topic_eval.train import train

PROSE = (Path(__file__).parent / "data" / "prose_public_domain.txt").read_text().strip().split("\n\n")


def test_roff_rst_and_wiki_markup_become_prose():
    roff = '.\\" comment\n.TH LS 1\n.SH NAME\nls \\- list directory contents\n.PP\n\\fBls\\fR lists \\fIfiles\\fP.\n'
    assert roff_to_text(roff).split() == ["NAME", "ls", "-", "list", "directory", "contents", "ls", "lists", "files."]
    rst = "Title\n=====\n\nUse :func:`open` to read ``data``::\n\n    code()\n\n.. note::\n   hidden\n\nEnd.\n"
    assert rst_to_text(rst).split() == ["Title", "Use", "open", "to", "read", "data:", "End."]
    wiki = "'''Ada''' is a [[programming language|language]].{{Infobox|x={{y}}}}<ref>cite</ref>\n" \
           "[[Category:Programming languages]]"
    assert wiki_to_text(wiki).strip() == "Ada is a language."
    assert wiki_categories(wiki) == ["Programming languages"]


def test_dictd_reader(tmp_path):
    body = b"alpha\n  the first letter\nbeta\n  the second letter\n"
    (tmp_path / "x.dict.dz").write_bytes(gzip.compress(body))
    (tmp_path / "x.index").write_text("alpha\tA\tb\nbeta\tb\tb\n")  # dictd base64: A=0, b=27
    assert list(dictd_entries(tmp_path / "x.dict.dz")) == [("alpha", body[:27].decode()), ("beta", body[27:54].decode())]


def test_chunks_respect_lengths_and_groups_stay_in_one_split():
    chunks = chunk_group(PROSE * 3, random.Random(0), min_words=30, max_words=60)
    assert chunks and all(30 <= len(c.split()) <= 60 for c in chunks)
    docs = [RawDoc(p, 0, "fortunes", f"g{i % 7}") for i, p in enumerate(PROSE * 20)]
    docs += [RawDoc(p, 0, "lee_news", "lee:0") for p in PROSE]
    examples = build_examples(docs, min_words=20, max_words=40, max_per_group=5)
    by_group = {}
    for ex in examples:
        by_group.setdefault(ex.group, set()).add(ex.split)
    assert all(len(splits) == 1 for splits in by_group.values())
    assert by_group["lee:0"] == {"test"} and "lee_news" in TEST_ONLY_SOURCES
    assert max(sum(ex.group == g for ex in examples) for g in by_group) <= 5
    assert split_of("fortunes", "g1") == split_of("fortunes", "g1")  # deterministic


def test_threshold_for_precision_is_the_lowest_reaching_the_target():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    labels = [1, 1, 0, 1, 0, 0]
    chosen = threshold_for_precision(scores, labels, target=0.75)
    assert chosen.threshold == 0.6 and (chosen.tp, chosen.fp) == (3, 1)
    assert counts_at(scores, labels, 0.6) == chosen
    assert threshold_for_precision(scores, labels, target=1.0).threshold == 0.8


def test_training_separates_real_cs_text_from_prose():
    cs = [argparse.__doc__, subprocess.__doc__, json.__doc__, subprocess.run.__doc__, logging.Logger.__doc__,
          threading.Thread.__doc__, json.dumps.__doc__, json.loads.__doc__]
    examples = [Example(t, 1, f"cs{i % 2}", f"cs{i}", "train") for i, t in enumerate(cs)]
    examples += [Example(t, 0, f"prose{i % 2}", f"prose{i}", "train") for i, t in enumerate(PROSE * 2)]
    scorer = train(examples, l2=1e-3, max_features=200, min_groups=1)
    assert len(scorer.weights) <= 200
    assert min(scorer.score(t) for t in cs) > max(scorer.score(t) for t in PROSE)
