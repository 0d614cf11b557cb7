"""What decoding a Parquet row group will cost, read from its page headers before any page is decoded.

pyarrow decodes a whole page at a time, and the file decides the page size: a 10 KB file can hold one page of
300 MB of text (a decompression bomb), and one dictionary entry can be repeated in every row. The footer's sizes
cannot be trusted (a file may state 1 KB for that page and pyarrow still decodes it); a page header's
`uncompressed_page_size` can, as pyarrow allocates that much and fails on a page that decompresses to more. So the
headers are read here (Thrift compact protocol, skipping page data with seeks), without decoding anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow.parquet as pq

# Thrift compact-protocol types (parquet-format's PageHeader: 1 type, 2 uncompressed_page_size,
# 3 compressed_page_size, 5 data_page_header, 7 dictionary_page_header, 8 data_page_header_v2; num_values is field
# 1 of each of the three).
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)
MAX_HEADER_BYTES = 16 << 20  # pyarrow's own limit on one page header
DICTIONARY_PAGE = 2


class _Thrift:
    """Reads compact-protocol values from a file, skipping binary fields with a seek."""

    def __init__(self, f: BinaryIO, end: int):
        self.f, self.end = f, end

    def byte(self) -> int:
        b = self.f.read(1)
        if not b or self.f.tell() > self.end:
            raise ValueError("a page header runs past its column chunk")
        return b[0]

    def varint(self) -> int:
        value = 0
        for shift in range(0, 70, 7):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
        raise ValueError("a varint longer than 10 bytes")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int, depth: int) -> Any:
        if kind in (_TRUE, _FALSE):
            return kind == _TRUE
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind in (_DOUBLE, _BINARY):
            self.f.seek(8 if kind == _DOUBLE else self.varint(), 1)
            return None
        if kind in (_LIST, _SET):
            head = self.byte()
            size = self.varint() if head >> 4 == 15 else head >> 4
            element = _BYTE if head & 15 in (_TRUE, _FALSE) else head & 15  # a bool element is one byte
            for _ in range(size):  # each element takes at least one byte: a lying size meets the end
                self.value(element, depth + 1)
            return None
        if kind == _MAP:
            size = self.varint()
            types = self.byte() if size else 0
            for _ in range(size):
                self.value(types >> 4, depth + 1)
                self.value(types & 15, depth + 1)
            return None
        if kind == _STRUCT:
            return self.struct(depth + 1)
        raise ValueError(f"thrift type {kind}")

    def struct(self, depth: int = 0) -> dict[int, Any]:
        if depth > 32:
            raise ValueError("a page header nested too deep")
        fields: dict[int, Any] = {}
        last = 0
        while head := self.byte():
            last = last + (head >> 4) if head >> 4 else self.zigzag()
            fields[last] = self.value(head & 15, depth)
        return fields


@dataclass(frozen=True)
class Cost:
    """What decoding some columns of a row group takes: its largest page, and bytes per row a batch may hold."""

    largest_page: int
    row_bytes: int


def column_cost(f: BinaryIO, column: pq.ColumnChunkMetaData) -> Cost:
    """Walk the pages of one column chunk (the byte range pyarrow reads). A data page costs its bytes per value;
    after a dictionary page a single value may be its largest entry, so the whole dictionary counts per row."""
    start = column.data_page_offset
    if column.has_dictionary_page and 0 < column.dictionary_page_offset < start:
        start = column.dictionary_page_offset
    end = start + column.total_compressed_size
    largest = per_row = dictionary = 0
    pos = start
    while pos < end:
        f.seek(pos)
        header = _Thrift(f, min(end, pos + MAX_HEADER_BYTES)).struct()
        kind, size, stored = header.get(1), header.get(2), header.get(3)
        if not all(isinstance(v, int) and v >= 0 for v in (kind, size, stored)):
            raise ValueError(f"a page header at byte {pos} without its sizes")
        largest = max(largest, size)
        page = next((header[k] for k in (5, 7, 8) if isinstance(header.get(k), dict)), {})
        values = max(int(page.get(1) or 0), 1)
        if kind == DICTIONARY_PAGE:
            dictionary = max(dictionary, size)
        else:
            per_row = max(per_row, -(-size // values))
        pos = f.tell() + stored
    return Cost(largest, per_row + dictionary)


def row_group_cost(f: BinaryIO, pf: pq.ParquetFile, group: int, columns: list[str]) -> Cost:
    """The cost of decoding the columns named (top-level names) of one row group; ValueError for a page header that
    cannot be parsed."""
    meta = pf.metadata.row_group(group)
    largest = per_row = 0
    for i in range(meta.num_columns):
        path = pf.schema.column(i).path
        if any(path == name or path.startswith(name + ".") for name in columns):
            cost = column_cost(f, meta.column(i))
            largest, per_row = max(largest, cost.largest_page), per_row + cost.row_bytes
    return Cost(largest, per_row)
