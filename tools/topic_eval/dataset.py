"""From raw labelled texts to the labelled set: paragraph chunks, per-group caps and a split that keeps groups whole.

A group (one man page, one Python package, one novel, one newsgroup) lands wholly in train, val or test, and some
sources land wholly in test (`TEST_ONLY_SOURCES`), so the test numbers measure text the scorer has never seen, neither
the same document nor (for those sources) the same kind of document.
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

from tools.topic_eval.sources import RawDoc, stable_fraction

TEST_ONLY_SOURCES = ("python_docs", "lee_news", "devils_dictionary")
TEST_FRACTION, VAL_FRACTION = 0.25, 0.15
_WS = re.compile(r"[ \t\r\f\v]+")


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    source: str
    group: str
    split: str  # "train" | "val" | "test"


def split_of(source: str, group: str) -> str:
    if source in TEST_ONLY_SOURCES:
        return "test"
    u = stable_fraction(f"split:{group}")
    return "test" if u < TEST_FRACTION else "val" if u < TEST_FRACTION + VAL_FRACTION else "train"


def paragraphs(text: str) -> Iterator[str]:
    """Blank-line separated paragraphs with whitespace squashed; fragments of fewer than 3 words skipped."""
    for block in re.split(r"\n\s*\n", text):
        para = " ".join(_WS.sub(" ", line).strip() for line in block.splitlines()).strip()
        if len(para.split()) >= 3:
            yield para


def chunk_group(texts: Iterable[str], rng: random.Random, min_words: int, max_words: int) -> list[str]:
    """Consecutive paragraphs joined until a target length drawn from [min_words, max_words]; a paragraph longer
    than the target is cut at the target. The remainder shorter than min_words is dropped."""
    chunks: list[str] = []
    current: list[str] = []
    count, target = 0, rng.randint(min_words, max_words)
    for text in texts:
        for para in paragraphs(text):
            words = para.split()
            while words:
                take = words[: target - count]
                words = words[len(take):]
                current.append(" ".join(take))
                count += len(take)
                if count >= target:
                    chunks.append("\n\n".join(current))
                    current, count, target = [], 0, rng.randint(min_words, max_words)
    if count >= min_words:
        chunks.append("\n\n".join(current))
    return chunks


def build_examples(docs: Iterable[RawDoc], *, seed: int = 0, min_words: int = 30, max_words: int = 250,
                   max_per_group: int = 400, max_per_source: int = 3000) -> list[Example]:
    """Chunk every group, cap chunks per group and per source (uniform samples, seeded), assign splits."""
    texts: dict[tuple[str, str, int], list[str]] = defaultdict(list)
    for doc in docs:
        texts[(doc.source, doc.group, doc.label)].append(doc.text)
    by_source: dict[str, list[Example]] = defaultdict(list)
    for (source, group, label), group_texts in sorted(texts.items()):
        rng = random.Random(f"{seed}:{group}")
        chunks = chunk_group(group_texts, rng, min_words, max_words)
        if len(chunks) > max_per_group:
            chunks = rng.sample(chunks, max_per_group)
        split = split_of(source, group)
        by_source[source].extend(Example(c, label, source, group, split) for c in chunks)
    examples: list[Example] = []
    for source, items in sorted(by_source.items()):
        if len(items) > max_per_source:
            items = random.Random(f"{seed}:{source}").sample(items, max_per_source)
        examples.extend(items)
    return examples


def write_examples(out_dir: Path, examples: list[Example]) -> dict:
    """`out_dir/{train,val,test}.jsonl` plus `summary.json` (counts by split, source and label); returns the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    groups: dict[tuple[str, str], set] = defaultdict(set)
    with ExitStack() as stack:
        handles = {s: stack.enter_context((out_dir / f"{s}.jsonl").open("w", encoding="utf-8"))
                   for s in ("train", "val", "test")}
        for ex in examples:
            handles[ex.split].write(json.dumps(asdict(ex), ensure_ascii=False) + "\n")
            counts[(ex.split, ex.source, ex.label)] += 1
            groups[(ex.split, ex.source)].add(ex.group)
    summary = {
        "examples": {s: sum(n for (sp, _, _), n in counts.items() if sp == s) for s in handles},
        "by_split_source_label": [
            {"split": sp, "source": src, "label": lab, "examples": n, "groups": len(groups[(sp, src)])}
            for (sp, src, lab), n in sorted(counts.items())
        ],
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def read_examples(path: Path) -> list[Example]:
    with path.open(encoding="utf-8") as handle:
        return [Example(**json.loads(line)) for line in handle]
