"""A small corpus of real code and prose (document records in Parquet) and a tokenizer trained on it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from data_pipeline.records import Document, write_documents

STDLIB = Path(os.__file__).parent
CODE = ["textwrap.py", "shlex.py", "heapq.py", "bisect.py", "colorsys.py", "fnmatch.py", "keyword.py"]


def make_documents() -> list[Document]:
    docs = []
    for name in CODE:
        text = (STDLIB / name).read_text(encoding="utf-8")
        for k in range(3):  # three slices per file: more, smaller documents
            part = text[k * 1500:(k + 1) * 1500]
            if part:
                docs.append(Document(id=f"{name}#{k}", text=part, kind="code", lang="python", source="stdlib",
                                     path=f"{name}", license="PSF-2.0"))
    prose = (STDLIB / "this.py").read_text(encoding="utf-8")  # rot13 prose; plus real docstrings as text
    for name in CODE:
        import ast

        tree = ast.parse((STDLIB / name).read_text(encoding="utf-8"))
        doc = ast.get_docstring(tree) or prose
        docs.append(Document(id=f"doc:{name}", text=doc + "\nÜber naïve café — ß", kind="text", lang="en",
                             source="docstrings"))
    docs.append(Document(id="empty", text="", kind="text", lang="en", source="docstrings"))
    return docs


@pytest.fixture(scope="session")
def documents() -> list[Document]:
    return make_documents()


@pytest.fixture(scope="session")
def tokenizer(documents):
    from data_pipeline.tokenizer import train_bpe

    return train_bpe([d.text for d in documents], vocab_size=512)


@pytest.fixture()
def inputs(tmp_path, documents) -> list[Path]:
    """The corpus as two Parquet shards, as a pipeline stage leaves them."""
    half = len(documents) // 2
    a, b = tmp_path / "in" / "part-0.parquet", tmp_path / "in" / "part-1.parquet"
    write_documents(a, documents[:half])
    write_documents(b, documents[half:])
    return [a, b]
