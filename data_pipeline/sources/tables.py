"""Record sources: JSONL and Parquet files, HF datasets saved with `save_to_disk` or loadable from local files.

Each is split into work items (byte ranges of a JSONL file, row groups of a Parquet file, row ranges of a dataset)
so that one huge file still spreads over many workers. Field names are looked up through configurable aliases
(`ingest.fields`), so The Stack's `content` / `max_stars_repo_path` columns work as well as our own schema.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq

from data_pipeline.records import KINDS, Document
from data_pipeline.sources.files import Skipped
from data_pipeline.sources.languages import CODE_EXTENSIONS, classify_name

DEFAULT_FIELDS: dict[str, list[str]] = {
    "text": ["text", "content", "code"],
    "id": ["id"],
    "kind": ["kind"],
    "lang": ["lang", "language"],
    "path": ["path", "max_stars_repo_path", "filename"],
    "license": ["license", "licenses", "max_stars_repo_licenses"],
    "meta": ["meta"],
}
PROGRAMMING_LANGUAGES = set(CODE_EXTENSIONS.values())


def _first(record: dict[str, Any], names: list[str]) -> Any:
    for name in names:
        value = record.get(name)
        if value is not None:
            return value
    return None


def record_to_document(
    record: Any, *, source: str, locator: str, fields: dict[str, list[str]], default_kind: str
) -> Document | Skipped:
    """One JSON object / table row -> Document, or Skipped("corrupt_record" / "missing_text" / "empty")."""
    if not isinstance(record, dict):
        return Skipped(locator, "corrupt_record")
    text = _first(record, fields["text"])
    if not isinstance(text, str):
        return Skipped(locator, "missing_text")
    if not text.strip():
        return Skipped(locator, "empty")
    path = _first(record, fields["path"])
    path = str(path) if path is not None else None
    lang = _first(record, fields["lang"])
    lang = str(lang) if lang is not None else None
    kind = _first(record, fields["kind"])
    if kind not in KINDS:
        by_name = classify_name(path.rsplit("/", 1)[-1]) if path else None
        if by_name is not None:
            kind = by_name[0]
            lang = lang or (by_name[1] if kind == "code" else None)
        elif lang and lang.lower() in PROGRAMMING_LANGUAGES:
            kind = "code"
        else:
            kind = default_kind
    if kind == "code" and lang:
        lang = lang.lower()
    license_id = _first(record, fields["license"])
    if isinstance(license_id, (list, tuple)):
        license_id = " AND ".join(str(x) for x in license_id) if license_id else None
    raw_id = _first(record, fields["id"])
    meta = _first(record, fields["meta"])
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = {"meta": meta}
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta.setdefault("locator", locator)
    return Document(
        id=f"{source}/{raw_id}" if raw_id is not None else f"{source}/{locator}",
        text=text, kind=kind, lang=lang, source=source, path=path or locator,
        license=str(license_id) if license_id is not None else None, meta=meta,
    )


# ---------- JSONL ----------
def plan_jsonl(path: Path, chunk_bytes: int) -> list[dict[str, Any]]:
    """Split a JSONL file at line boundaries into ranges of about `chunk_bytes`, with each range's first line number."""
    items: list[dict[str, Any]] = []
    size = path.stat().st_size
    with open(path, "rb") as f:
        start, line_no = 0, 1
        while start < size:
            f.seek(min(start + chunk_bytes, size))
            if f.tell() < size:
                f.readline()  # move the cut to the end of the line it fell in
            end = f.tell()
            items.append({"start": start, "end": end, "first_line": line_no})
            f.seek(start)
            line_no += f.read(end - start).count(b"\n")
            start = end
    return items


def read_jsonl(path: Path, start: int, end: int, first_line: int, *, source: str, fields: dict[str, list[str]],
               default_kind: str) -> Iterator[Document | Skipped]:
    name = path.name
    with open(path, "rb") as f:
        f.seek(start)
        line_no = first_line
        while f.tell() < end:
            raw = f.readline()
            locator = f"{name}:{line_no}"
            line_no += 1
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                yield Skipped(locator, "corrupt_jsonl", len(raw))
                continue
            yield record_to_document(record, source=source, locator=locator, fields=fields, default_kind=default_kind)


# ---------- Parquet ----------
def plan_parquet(path: Path, rows_per_item: int) -> list[dict[str, Any]]:
    meta = pq.ParquetFile(str(path)).metadata
    items, groups, rows, first_row = [], [], 0, 0
    for i in range(meta.num_row_groups):
        groups.append(i)
        rows += meta.row_group(i).num_rows
        if rows >= rows_per_item:
            items.append({"row_groups": groups, "first_row": first_row})
            first_row += rows
            groups, rows = [], 0
    if groups:
        items.append({"row_groups": groups, "first_row": first_row})
    return items


def read_parquet(path: Path, row_groups: list[int], first_row: int, *, source: str, fields: dict[str, list[str]],
                 default_kind: str) -> Iterator[Document | Skipped]:
    pf = pq.ParquetFile(str(path))
    index = first_row
    for batch in pf.iter_batches(batch_size=1024, row_groups=row_groups):
        for record in batch.to_pylist():
            yield record_to_document(record, source=source, locator=f"{path.name}:{index}", fields=fields,
                                     default_kind=default_kind)
            index += 1


# ---------- HF datasets ----------
def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / n).exists() for n in ("state.json", "dataset_dict.json"))


def load_hf(path: Path, loader: str, split: str | None, cache_dir: str | None = None):
    """A `datasets.Dataset`: `load_from_disk` (saved) or `load_dataset` of a local folder of data files (its Arrow
    cache goes to `cache_dir`, the pipeline's output directory, not the user's home)."""
    import datasets

    if loader == "disk":
        ds = datasets.load_from_disk(str(path))
    else:
        ds = datasets.load_dataset(str(path), split=split or "train", cache_dir=cache_dir)
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise ValueError(f"{path}: a DatasetDict with splits {list(ds)}; set ingest.hf_split to one of them")
            split = next(iter(ds))
        ds = ds[split]
    return ds


def plan_hf(path: Path, loader: str, split: str | None, rows_per_item: int,
            cache_dir: str | None = None) -> list[dict[str, Any]]:
    n = len(load_hf(path, loader, split, cache_dir))
    return [{"start": s, "end": min(s + rows_per_item, n)} for s in range(0, n, rows_per_item)]


def read_hf(path: Path, loader: str, split: str | None, start: int, end: int, *, source: str,
            fields: dict[str, list[str]], default_kind: str, cache_dir: str | None = None) -> Iterator[Document | Skipped]:
    ds = load_hf(path, loader, split, cache_dir)
    for offset in range(start, end, 1024):
        batch = ds[offset: min(offset + 1024, end)]
        columns = list(batch)
        for i in range(len(batch[columns[0]]) if columns else 0):
            record = {c: batch[c][i] for c in columns}
            yield record_to_document(record, source=source, locator=f"{path.name}:{offset + i}", fields=fields,
                                     default_kind=default_kind)
