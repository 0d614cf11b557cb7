"""Record sources: JSONL, Parquet, CSV and Arrow files, alone or in a folder, and HF datasets saved with
`save_to_disk` (their Arrow shards read directly).

Each file is split into work items (byte ranges of a JSONL file, row groups of a Parquet file, row ranges of an
Arrow shard) so that one huge file still spreads over many workers. Every reader takes an open binary file (files
below a folder are opened without following links: data_pipeline/sources/confined.py), and a file that cannot be
read becomes one dropped entry in the ingest stage instead of an error. Field names are looked up through
configurable aliases (`ingest.fields`), so The Stack's `content` / `max_stars_repo_path` columns work as well as our
own schema.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from data_pipeline.records import KINDS, Document
from data_pipeline.sources import confined, parquet_pages
from data_pipeline.sources.confined import shown
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


def _first(record: dict[str, Any], names: list[str], types: type | tuple[type, ...] = object) -> Any:
    for name in names:
        value = record.get(name)
        if value is not None and isinstance(value, types):
            return value
    return None


def record_to_document(
    record: Any, *, source: str, locator: str, fields: dict[str, list[str]], default_kind: str
) -> Document | Skipped:
    """One JSON object / table row -> Document, or Skipped("corrupt_record" / "missing_text" / "empty" /
    "encoding:not_utf8"). Strings UTF-8 cannot hold (lone surrogates of JSON escapes, undecodable bytes) are shown
    escaped in id, path, lang and licence; a text holding them is dropped."""
    if not isinstance(record, dict):
        return Skipped(locator, "corrupt_record")
    text = _first(record, fields["text"], (str, bytes, bytearray))  # `text` a number and `content` code: the code
    if isinstance(text, (bytes, bytearray)):  # a binary column
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            return Skipped(locator, "encoding:not_utf8", len(text))
    if not isinstance(text, str):
        return Skipped(locator, "missing_text")
    if shown(text) != text:
        return Skipped(locator, "encoding:not_utf8", len(text))
    if not text.strip():
        return Skipped(locator, "empty")
    path = _as_str(_first(record, fields["path"]))
    lang = _as_str(_first(record, fields["lang"]))
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
    raw_id = _as_str(_first(record, fields["id"]))
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
        license=_as_str(license_id), meta=meta,
    )


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "surrogateescape")
    return shown(str(value))


def failure_reason(exc: BaseException, fmt: str) -> str:
    """The drop reason of a file (or part of one) whose reading raised `exc`: a link reason, `unreadable` for an
    error of the operating system, else `corrupt:<fmt>` (pyarrow's errors on corrupt data are OSErrors without
    an errno)."""
    if isinstance(exc, confined.Refused):
        return exc.reason
    return "unreadable" if isinstance(exc, OSError) and exc.errno is not None else f"corrupt:{fmt}"


def table_schema(f: BinaryIO, fmt: str) -> pa.Schema:
    """The schema of a Parquet file (its footer) or an Arrow shard (its first message): no row is read."""
    if fmt == "parquet":
        return pq.ParquetFile(f).schema_arrow
    f.seek(0)
    try:
        return pa.ipc.open_stream(f).schema
    except pa.ArrowInvalid:
        f.seek(0)
        return pa.ipc.open_file(f).schema


def _holds_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    kinds = ("string", "large_string", "string_view", "binary", "large_binary", "binary_view", "null")
    return any(getattr(pa.types, f"is_{kind}")(t) for kind in kinds)  # a null column: each row is `missing_text`


def text_column_problem(schema: pa.Schema, names: list[str]) -> str | None:
    """Why no row of a table with this schema can have a text (no column of one of these names holds strings),
    or None."""
    found = {field.name: field.type for field in schema if field.name in names}
    if any(_holds_text(t) for t in found.values()):
        return None
    if found:
        return ", ".join(f"its column {name} is {t}" for name, t in found.items()) + ", not text"
    columns = ", ".join(schema.names[:20]) + (", ..." if len(schema.names) > 20 else "")
    return f"it has no column named {' / '.join(names)} (its columns: {columns or 'none'})"


# A JSONL or CSV file may come compressed (as `datasets` reads it too): it is read as a stream, so that memory stays
# one line however far an archive expands (a bomb costs time, as a file of that size would), and is one work item.
COMPRESSED = {".gz": lambda f: gzip.GzipFile(fileobj=f, mode="rb"), ".bz2": lambda f: bz2.BZ2File(f, "rb"),
              ".xz": lambda f: lzma.LZMAFile(f, "rb")}


def without_compression(name: str) -> str:
    """A file name without its compression suffix (`train.jsonl.gz` -> `train.jsonl`)."""
    base, suffix = os.path.splitext(name)
    return base if suffix.lower() in COMPRESSED else name


@contextmanager
def decompressed(f: BinaryIO, name: str) -> Iterator[BinaryIO]:
    """The content of the file `f` called `name`: decompressed when its name ends with a COMPRESSED suffix."""
    opener = COMPRESSED.get(os.path.splitext(name)[1].lower())
    if opener is None:
        yield f
        return
    with opener(f) as stream:
        yield stream


# ---------- JSONL ----------
# A longer line is one `too_large` entry, never held in memory: a sparse file of zeros claiming terabytes would
# otherwise be one line read whole (a code record is far smaller: ingest.max_file_bytes is 1 MB by default).
MAX_LINE_BYTES = 64 << 20


def read_line(f: BinaryIO) -> tuple[bytes, int]:
    """The next line (with its newline) and its length; a line over MAX_LINE_BYTES is skipped in chunks and comes
    back as b"" with its length."""
    raw = f.readline(MAX_LINE_BYTES + 1)
    if len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n"):
        return raw, len(raw)
    size = len(raw)
    while chunk := f.readline(1 << 20):
        size += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"", size


def not_json_lines(f: BinaryIO) -> str | None:
    """What a file handed over as JSONL is instead, judged by its first non-blank line: "a JSON array" (`[` alone,
    or an array on one line) or "pretty-printed JSON" (`{` alone); None when it may be JSONL."""
    line = ""
    while not line and (raw := f.readline(1 << 20)):
        line = raw.decode("utf-8-sig", "replace").strip()
    if line in ("{", "["):
        return "pretty-printed JSON" if line == "{" else "a JSON array"
    try:
        return "a JSON array" if line.startswith("[") and isinstance(json.loads(line), list) else None
    except (ValueError, RecursionError):  # a line longer than 1 MiB, cut: not judged
        return None


def plan_jsonl(f: BinaryIO, chunk_bytes: int) -> list[dict[str, Any]]:
    """Split a JSONL file at line boundaries into ranges of about `chunk_bytes`: each range's bytes, first line
    number and `inputs` (its non-blank lines, the records the reader will account for)."""
    items: list[dict[str, Any]] = []
    start = offset = inputs = 0
    line_no = first_line = 1
    while True:
        raw, size = read_line(f)
        if not size:
            break
        offset += size
        line_no += 1
        inputs += 1 if raw.strip() or not raw else 0  # a line too long to hold (raw b"") is one input too
        if offset - start >= chunk_bytes:
            items.append({"start": start, "end": offset, "first_line": first_line, "inputs": inputs})
            start, first_line, inputs = offset, line_no, 0
    if offset > start:
        items.append({"start": start, "end": offset, "first_line": first_line, "inputs": inputs})
    return items


def read_jsonl(f: BinaryIO, start: int, end: int, first_line: int, *, name: str, source: str,
               fields: dict[str, list[str]], default_kind: str) -> Iterator[Document | Skipped]:
    f.seek(start)
    line_no = first_line
    while f.tell() < end:
        raw, size = read_line(f)
        if not size:
            raise EOFError(f"{name} ends before byte {end} (shortened since it was planned)")
        locator = f"{name}:{line_no}"
        line_no += 1
        if not raw:
            yield Skipped(locator, "too_large", size)
            continue
        if not raw.strip():
            continue
        try:  # utf-8-sig: a byte-order mark (Windows tools write one; `cat` of such files puts one mid-file)
            record = json.loads(raw.decode("utf-8-sig"))
        except (ValueError, RecursionError):  # bad JSON or UTF-8, a number Python refuses (int over 4300 digits)
            yield Skipped(locator, "corrupt:jsonl", len(raw))
            continue
        yield record_to_document(record, source=source, locator=locator, fields=fields, default_kind=default_kind)


# ---------- Parquet ----------
def plan_parquet(f: BinaryIO, rows_per_item: int) -> list[dict[str, Any]]:
    meta = pq.ParquetFile(f).metadata
    items, groups, rows, first_row = [], [], 0, 0
    for i in range(meta.num_row_groups):
        groups.append(i)
        rows += meta.row_group(i).num_rows
        if rows >= rows_per_item:
            items.append({"row_groups": groups, "first_row": first_row, "inputs": rows})
            first_row += rows
            groups, rows = [], 0
    if groups:
        items.append({"row_groups": groups, "first_row": first_row, "inputs": rows})
    return items


# A page is decoded whole, and the file decides its size: a larger one (pyarrow writes one only for documents
# averaging over 256 KB; `write_batch_size=64` keeps them smaller) makes its row group one `too_large` entry. Batches
# hold about BATCH_BYTES, by the page headers' bytes per row (a repeated dictionary entry counts in every row).
MAX_PAGE_BYTES = 4 * MAX_LINE_BYTES
BATCH_BYTES = 64 << 20


def read_parquet(f: BinaryIO, row_groups: list[int], first_row: int, *, name: str, source: str,
                 fields: dict[str, list[str]], default_kind: str) -> Iterator[Document | Skipped]:
    """The rows of some row groups (only the columns a field can use); a row group that cannot be decoded (a corrupt
    page) is one Skipped for its rows not read, and the next row group is read."""
    pf = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)  # one compressed page in memory, not a row group
    wanted = {alias for aliases in fields.values() for alias in aliases}
    columns = [column for column in pf.schema_arrow.names if column in wanted]
    for group in row_groups:
        rows, done = pf.metadata.row_group(group).num_rows, 0
        where = f"{name}:rows {first_row}-{first_row + rows - 1}"
        try:
            cost = parquet_pages.row_group_cost(f, pf, group, columns)
            if cost.largest_page > MAX_PAGE_BYTES:
                yield Skipped(where, "too_large", cost.largest_page, count=rows)
                first_row += rows
                continue
            batches = pf.iter_batches(batch_size=max(1, min(1024, BATCH_BYTES // max(cost.row_bytes, 1))),
                                      row_groups=[group], columns=columns)
            for got in _rows(batches, first_row, name, source, fields, default_kind):
                done += 1
                yield got
        except MemoryError:
            raise
        except Exception as exc:
            yield Skipped(f"{name}:rows {first_row + done}-{first_row + rows - 1}", failure_reason(exc, "parquet"),
                          count=rows - done)
        first_row += rows


def _rows(batches: Iterator[pa.RecordBatch], first_row: int, name: str, source: str, fields: dict[str, list[str]],
          default_kind: str) -> Iterator[Document | Skipped]:
    index = first_row
    for batch in batches:
        for record in batch.to_pylist():
            locator = f"{name}:{index}"
            index += 1
            try:
                yield record_to_document(record, source=source, locator=locator, fields=fields,
                                         default_kind=default_kind)
            except (TypeError, ValueError) as exc:  # a value of an unexpected type in one row
                yield Skipped(locator, f"error:{type(exc).__name__}")


# ---------- Arrow (the shards of a dataset saved with `save_to_disk`), CSV ----------
def arrow_batches(f: BinaryIO) -> Iterator[pa.RecordBatch]:
    """The record batches of an Arrow IPC stream (what `datasets` writes) or IPC file."""
    f.seek(0)
    try:
        reader = pa.ipc.open_stream(f)
    except pa.ArrowInvalid:
        f.seek(0)
        file_reader = pa.ipc.open_file(f)
        for i in range(file_reader.num_record_batches):
            yield file_reader.get_batch(i)
        return
    yield from reader


def plan_arrow(f: BinaryIO, rows_per_item: int) -> list[dict[str, Any]]:
    n = sum(batch.num_rows for batch in arrow_batches(f))
    return [{"start": s, "end": min(s + rows_per_item, n), "inputs": min(rows_per_item, n - s)}
            for s in range(0, n, rows_per_item)]


def read_arrow(f: BinaryIO, start: int, end: int, first_row: int, *, name: str, source: str,
               fields: dict[str, list[str]], default_kind: str) -> Iterator[Document | Skipped]:
    """Rows [start, end) of one Arrow file; `first_row` numbers them within the whole dataset."""
    def window() -> Iterator[pa.RecordBatch]:
        offset = 0
        for batch in arrow_batches(f):
            lo, hi = max(start - offset, 0), min(end - offset, batch.num_rows)
            if lo < hi:
                yield batch.slice(lo, hi - lo)
            offset += batch.num_rows
            if offset >= end:
                return
    yield from _rows(window(), first_row + start, name, source, fields, default_kind)


# Python's csv module, not pyarrow's: pyarrow's streaming reader needs every row within one block and reads dozens of
# blocks ahead (a 1 GB CSV of code took 680 MB), and its whole-file reader holds the file (and, past one 1 MB block,
# refused rows with a newline in a quoted cell, i.e. every CSV of code). Rows are read one at a time, as text.
csv.field_size_limit(MAX_LINE_BYTES)  # a longer cell stops the file's reading: its remaining rows are dropped


def _csv_lines(f: BinaryIO) -> Iterator[str]:
    """The lines of a CSV, none longer than MAX_LINE_BYTES characters (a newline-less file is never read whole);
    bytes that are not UTF-8 stay as surrogates, so that only the rows holding them are dropped. A byte-order mark
    (Excel's "CSV UTF-8") is not part of the first column's name."""
    f.seek(0)
    text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        while line := text.readline(MAX_LINE_BYTES):
            if len(line) == MAX_LINE_BYTES and not line.endswith(("\n", "\r")):
                raise ValueError(f"a line longer than {MAX_LINE_BYTES} characters")
            yield line
    finally:
        text.detach()  # the caller's file stays open


def csv_records(f: BinaryIO) -> Iterator[dict[str, Any]]:
    """The rows of a CSV with a header line, as dicts of strings (a short row's missing cells are None)."""
    reader = csv.DictReader(_csv_lines(f))
    if reader.fieldnames is None:
        raise ValueError("no header line")
    yield from reader


def plan_csv(f: BinaryIO) -> list[dict[str, Any]]:
    return [{"inputs": sum(1 for _ in csv_records(f))}]


def read_csv(f: BinaryIO, *, name: str, source: str, fields: dict[str, list[str]],
             default_kind: str) -> Iterator[Document | Skipped]:
    for index, record in enumerate(csv_records(f)):
        yield record_to_document(record, source=source, locator=f"{name}:{index}", fields=fields,
                                 default_kind=default_kind)


# ---------- datasets saved with `save_to_disk` ----------
class SplitNotChosen(ValueError):
    """A DatasetDict whose split the config must name (`ingest.hf_split`): a problem of the run, not of the data."""


def is_saved_dataset(path: Path) -> bool:
    """A folder written by `save_to_disk`: a DatasetDict's dataset_dict.json, or a Dataset's state.json beside its
    dataset_info.json (a state.json alone is too common a name: an app's folder is no dataset)."""
    def has(name: str) -> bool:
        return os.path.lexists(path / name)
    return path.is_dir() and (has("dataset_dict.json") or (has("state.json") and has("dataset_info.json")))


def dataset_splits(root: Path) -> list[str] | None:
    """The splits of a saved DatasetDict (its dataset_dict.json), None for a single saved Dataset; ValueError naming
    the file when it does not hold a list of split names."""
    if not os.path.lexists(root / "dataset_dict.json"):
        return None
    declared = json.loads(confined.read_bytes(root, "dataset_dict.json", 1 << 20))
    splits = declared.get("splits") if isinstance(declared, dict) else None
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise ValueError(f"{root}/dataset_dict.json: no list of split names under 'splits'")
    return splits


def dataset_split(root: Path, split: str | None) -> str | None:
    """The split to read; SplitNotChosen when a DatasetDict needs one named."""
    splits = dataset_splits(root)
    if splits is None:
        return None
    if split is None and len(splits) == 1:
        return splits[0]
    if split is not None and split not in splits:
        raise SplitNotChosen(f"{root}: ingest.hf_split={split!r} is none of its splits {splits}; set one of them")
    if split not in splits:
        raise SplitNotChosen(f"{root}: a DatasetDict with splits {splits}; set ingest.hf_split to one of them")
    return split


def saved_dataset_shards(root: Path, split: str | None) -> list[str]:
    """Relative paths of the Arrow shards of a saved dataset, in order, each once (read from state.json without
    following links; a shard name that leads out of `root` is refused when it is opened)."""
    prefix = f"{split}/" if split else ""
    state = json.loads(confined.read_bytes(root, prefix + "state.json", 1 << 24))
    return list(dict.fromkeys(prefix + entry["filename"] for entry in state["_data_files"]))  # a shard listed twice
