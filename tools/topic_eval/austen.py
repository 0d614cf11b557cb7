"""Read the character vectors (texts) out of an R package's lazy-load database (`data/Rdata.rdb`) without R.

Debian's `r-cran-janeaustenr` ships Jane Austen's six novels this way. An `.rdb` file is a run of entries, each a
4-byte big-endian length followed by a zlib stream holding one R object serialized in XDR format ("X\\n" header).
Only what those novels need is decoded: a top-level character vector (STRSXP) of strings (CHARSXP).
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

_STRSXP, _CHARSXP = 16, 9


def _unserialize_character_vector(blob: bytes) -> list[str] | None:
    if not blob.startswith(b"X\n"):
        return None
    pos = 14  # "X\n", format version, writer's R version, minimal reader version
    if struct.unpack_from(">i", blob, 2)[0] == 3:  # format version 3 adds the native encoding's name
        pos += 4 + struct.unpack_from(">i", blob, pos)[0]
    (flags,) = struct.unpack_from(">i", blob, pos)
    if flags & 0xFF != _STRSXP:
        return None
    (length,) = struct.unpack_from(">i", blob, pos + 4)
    pos += 8
    strings = []
    for _ in range(length):
        flags, size = struct.unpack_from(">ii", blob, pos)
        pos += 8
        if flags & 0xFF != _CHARSXP:
            raise ValueError(f"R serialization: expected a CHARSXP, found type {flags & 0xFF}")
        strings.append(blob[pos:pos + size].decode("utf-8", errors="replace") if size >= 0 else "")  # -1: NA
        pos += max(size, 0)
    return strings


def read_rdb_character_vectors(rdb: Path) -> dict[str, list[str]]:
    """Every character vector stored in `rdb`, keyed by its first non-empty element squashed to lowercase letters
    (e.g. "SENSE AND SENSIBILITY" -> "sensesensibility" after dropping "and"; see `_key`)."""
    data = rdb.read_bytes()
    vectors: dict[str, list[str]] = {}
    pos = 0
    while pos + 4 <= len(data):
        decomp = zlib.decompressobj()
        blob = decomp.decompress(data[pos + 4:])
        pos = len(data) - len(decomp.unused_data)
        strings = _unserialize_character_vector(blob)
        if strings and len(strings) > 1000:
            vectors[_key(strings)] = strings
    return vectors


def _key(strings: list[str]) -> str:
    title = next((s for s in strings if s.strip()), "")
    words = [w for w in title.lower().split() if w.isalpha() and w not in ("and", "the")]
    return "".join(words)
