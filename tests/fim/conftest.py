"""Real source files (some with non-ASCII text) and a small tokenizer trained on them, shared by the FIM tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

STDLIB = Path(os.__file__).parent
# Real files: plain Python, and two with non-ASCII characters (re/_casefix.py, shlex.py).
FILES = ["textwrap.py", "shlex.py", "re/_casefix.py", "json/decoder.py", "string.py", "heapq.py", "bisect.py",
         "colorsys.py", "fnmatch.py", "keyword.py", "graphlib.py", "numbers.py"]
EXTRA = [
    "Привет, мир! 漢字とかな 🙂🚀 café naïve\r\nsecond line\r\n\r\n\tindented — dash\n",
    "single line without newline ü",
    "",
    "\n\n\n",
]


def load_corpus() -> list[str]:
    texts = [(STDLIB / name).read_text(encoding="utf-8") for name in FILES]
    return texts + EXTRA


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return load_corpus()


@pytest.fixture(scope="session")
def tokenizer(corpus):
    from data_pipeline.tokenizer import train_bpe

    return train_bpe(corpus, vocab_size=1024)
