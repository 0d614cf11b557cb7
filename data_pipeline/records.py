"""The document record that every pipeline stage reads and writes (docs/design.md).

Stages exchange Parquet shards of these records; `datasets.load_dataset("parquet", data_files=...)` reads them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

KINDS = ("code", "text")

DOCUMENT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("kind", pa.string()),
        ("lang", pa.string()),
        ("source", pa.string()),
        ("path", pa.string()),
        ("license", pa.string()),
        ("meta", pa.string()),  # JSON object: free per-stage annotations
    ]
)

# Dictionary-encoded columns of a document shard: the few-valued ones. Trying it on `text`, `id` and `path` (all
# distinct) only costs time: writing and reading a shard take ~20 % less CPU without it.
DICTIONARY_COLUMNS = ["kind", "lang", "source", "license"]

OPTIONAL = ("lang", "source", "path", "license", "meta")  # columns a batch may lack (read as None)

DROPPED_SCHEMA = pa.schema(
    [("id", pa.string()), ("path", pa.string()), ("source", pa.string()), ("stage", pa.string()), ("reason", pa.string())]
)


@dataclass
class Document:
    id: str
    text: str
    kind: str  # "code" | "text"
    lang: str | None  # programming language for code, ISO 639-1 code for text
    source: str
    path: str | None = None
    license: str | None = None  # SPDX id
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"document {self.id!r} ({self.path}): kind must be one of {KINDS}, got {self.kind!r}")

    def to_row(self) -> dict[str, Any]:
        # field by field, not dataclasses.asdict: that deep-copies `meta` for every document written
        return {"id": self.id, "text": self.text, "kind": self.kind, "lang": self.lang, "source": self.source,
                "path": self.path, "license": self.license,
                "meta": json.dumps(self.meta, sort_keys=True, ensure_ascii=False)}


def _meta(meta: Any) -> dict[str, Any]:
    meta = meta or "{}"
    return json.loads(meta) if isinstance(meta, str) else dict(meta)


def write_documents(path: str | Path, docs: Iterable[Document]) -> int:
    """Write one Parquet shard of documents; returns the number written."""
    rows = [d.to_row() for d in docs]
    table = pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path), use_dictionary=DICTIONARY_COLUMNS)
    return len(rows)


def read_documents(path: str | Path, batch_size: int = 1024) -> Iterator[Document]:
    """Stream the documents of one Parquet shard."""
    for _, docs in read_document_batches(path, batch_size):
        yield from docs


def read_document_batches(path: str | Path, batch_size: int = 1024) -> Iterator[tuple[pa.RecordBatch, list[Document]]]:
    """Stream one Parquet shard a batch at a time: the Arrow rows and the same rows as Documents (a step that keeps
    some of them can write the Arrow rows back as they are: `ShardOutput.keep_table`)."""
    pf = pq.ParquetFile(str(path))
    for batch in pf.iter_batches(batch_size=batch_size):
        yield batch, documents_of(batch)


def documents_of(batch: pa.RecordBatch) -> list[Document]:
    """The rows of a batch of DOCUMENT_SCHEMA as Documents (a missing source read as ""); column by column
    (`batch.to_pylist()` builds a dict per row: 1.7x the time)."""
    columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
    n = batch.num_rows
    none = [None] * n
    return [Document(id=doc_id, text=text, kind=kind, lang=lang, source=source or "", path=path, license=license_,
                     meta=_meta(meta))
            for doc_id, text, kind, lang, source, path, license_, meta in zip(
                columns["id"], columns["text"], columns["kind"], *(columns.get(c, none) for c in OPTIONAL))]
