"""English filter: keep natural-language text (and, where configured, code whose comments are) in the allowed languages.

Language identification is CLD2 (`pycld2`: Chromium's compact language detector, its tables compiled into the
wheel: no download), chosen over py3langid by `bench/langid.py` (about 9x faster, precision and recall of "English"
within a point of it on the project's labelled sets: bench/RESULTS.md). A document is kept when the share of its text
that CLD2 assigns to the allowed languages reaches `min_probability`; otherwise it is dropped with reason
`not_english:<top language>` (`und` when nothing could be identified). Texts with fewer letters than
`min_chars` are too short to judge: `short_text` says whether they are kept or dropped (`not_english:too_short`).
For code, the comments and docstrings (`data_pipeline.filters.comments`) are judged the same way; code with too
little comment text, or in a language whose comments we cannot find, is kept. Config: configs/pipeline/english/.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

import pycld2

from data_pipeline.config import check_at_least, config_from_dict
from data_pipeline.filters.comments import extract_comments
from data_pipeline.records import KINDS, Document
from data_pipeline.stage import Stage, filter_stage

_FENCED_CODE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_URL = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class LanguageGuess:
    top: str  # the most likely language (ISO 639-1)
    allowed_probability: float  # probability mass of the allowed languages


# CLD2 refuses control characters (and surrogates) as "invalid UTF-8": they become spaces.
_CONTROL = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)], " ")


@lru_cache(maxsize=1)
def known_languages() -> frozenset[str]:
    return frozenset(code for _, code in pycld2.LANGUAGES)


def identify(text: str, allowed: tuple[str, ...]) -> LanguageGuess:
    """CLD2's best effort: the top language, and the share (0-1) of the text's bytes in the allowed languages."""
    clean = text.translate(_CONTROL).encode("utf-8", "replace").decode("utf-8")
    try:
        _, _, details = pycld2.detect(clean, bestEffort=True)
    except pycld2.error:  # a code point CLD2 still refuses: keep only the printable ones
        clean = "".join(ch for ch in clean if ch.isprintable() or ch in "\n\t")
        _, _, details = pycld2.detect(clean, bestEffort=True)
    top = next((code for _, code, percent, _ in details if code != "un" and percent > 0), "und")
    return LanguageGuess(top, sum(d[2] for d in details if d[1] in allowed) / 100)


def has_letters(text: str, n: int) -> bool:
    """Whether `text` holds at least n letters; reads only as far as needed (documents can be megabytes)."""
    count, start, step = 0, 0, max(2 * n, 64)  # growing chunks: most texts have n letters in their first 2n chars
    while start < len(text):
        count += sum(map(str.isalpha, text[start:start + step]))
        if count >= n:
            return True
        start, step = start + step, min(2 * step, 1 << 16)
    return count >= n


def prose_of_text(text: str) -> str:
    """The prose of a Markdown-ish text: fenced and inline code and URLs removed (they confuse language id)."""
    return _URL.sub(" ", _INLINE_CODE.sub(" ", _FENCED_CODE.sub(" ", text)))


@dataclass(frozen=True)
class EnglishFilter:
    languages: tuple[str, ...] = ("en",)
    min_probability: float = 0.5
    min_chars: int = 50
    short_text: str = "keep"  # keep | drop
    kinds: tuple[str, ...] = ("text", "code")
    check_code_comments: bool = True
    code_min_chars: int = 100
    strip_code_blocks: bool = True
    max_chars: int = 10_000
    code_scan_chars: int = 6_000  # code: comments are extracted from this many leading characters only ...
    code_tail_chars: int = 0  # ... and from this many trailing ones (from a line start), when the file is longer
    text_scan_chars: int = 40_000  # text: code blocks are stripped from this many leading characters only

    def __post_init__(self) -> None:
        if self.short_text not in ("keep", "drop"):
            raise ValueError(f"english.short_text must be 'keep' or 'drop', got {self.short_text!r}")
        if not 0.0 <= self.min_probability <= 1.0:
            raise ValueError(f"english.min_probability must be in [0, 1], got {self.min_probability}")
        if not self.languages:
            raise ValueError("english.languages is empty: every document would be dropped; list the ISO 639-1 codes "
                             "to keep, or set english.enabled=false")
        unknown = set(self.languages) - known_languages()
        if unknown:
            raise ValueError(f"english.languages: {sorted(unknown)} not known to CLD2 (use ISO 639-1 codes; "
                             f"CLD2 names Hebrew iw and Traditional Chinese zh-Hant)")
        if set(self.kinds) - set(KINDS):
            raise ValueError(f"english.kinds: {sorted(set(self.kinds) - set(KINDS))} is no document kind; use {KINDS}")
        # a negative count sliced from the end; max_chars=0 judged nothing and dropped every text as `und`
        check_at_least(self, "english", min_chars=0, code_min_chars=0, code_tail_chars=0, max_chars=1,
                       code_scan_chars=1, text_scan_chars=1)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "EnglishFilter":
        """Build from the `english` config section (the whole pipeline config is accepted too)."""
        section = dict(cfg.get("english", cfg))
        section.pop("enabled", None)
        for key in ("languages", "kinds"):
            if isinstance(section.get(key), list):  # a bare string is refused by config_from_dict
                section[key] = tuple(section[key])
        return config_from_dict(cls, section, "english")

    def __call__(self, doc: Document) -> str | None:
        return self.filter(doc)

    def filter(self, doc: Document) -> str | None:
        """None keeps `doc`; otherwise the drop reason."""
        if doc.kind not in self.kinds:
            return None
        if doc.kind == "code":
            if not self.check_code_comments:
                return None
            if len(doc.text) < self.code_min_chars:
                return None  # cannot hold code_min_chars letters of comments: nothing to parse
            comments = "\n".join(c for part in self.code_sample(doc.text) for c in extract_comments(part, doc.lang))
            if not has_letters(comments, self.code_min_chars):
                return None  # too little natural language to judge
            return self.judge(comments[: self.max_chars])
        text = doc.text[: self.text_scan_chars]  # identification reads max_chars of it: no need to clean more
        text = prose_of_text(text) if self.strip_code_blocks else text
        if not has_letters(text, self.min_chars):
            return None if self.short_text == "keep" else "not_english:too_short"
        return self.judge(text[: self.max_chars])

    def code_sample(self, code: str) -> list[str]:
        """Bounded pieces of a code file to parse: its head, and its tail when it is long (bench/english_filter.py
        measured what each bound costs and changes)."""
        if len(code) <= self.code_scan_chars + self.code_tail_chars:
            return [code]
        pieces = [code[: self.code_scan_chars]]
        if self.code_tail_chars:
            start = code.find("\n", len(code) - self.code_tail_chars)  # from a line start
            pieces.append(code[start + 1:] if start >= 0 else "")
        return pieces

    def judge(self, text: str) -> str | None:
        guess = identify(text, self.languages)
        if guess.allowed_probability >= self.min_probability:
            return None
        return f"not_english:{guess.top}"


def build_stage(section: dict[str, Any]) -> Stage:
    return filter_stage("english", EnglishFilter.from_config, section)
