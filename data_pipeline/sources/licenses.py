"""Licence detection: SPDX headers in a file, and the text of LICENSE / COPYING files of a repository."""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from data_pipeline.sources import confined

LICENSE_FILE = re.compile(r"^(licen[cs]e|copying|unlicense)([.-][\w.-]*)?$", re.IGNORECASE)
# On its own line: an empty identifier must not take the next line (`import os`) for a licence.
SPDX_HEADER = re.compile(r"SPDX-License-Identifier:[ \t]*([A-Za-z0-9.+()\- ]+?)[ \t]*(?:\*/|-->|$)", re.MULTILINE)
HEADER_CHARS = 4096  # SPDX headers sit at the top of a file

TITLE_CHARS = 1500  # copyleft titles are matched near the top only: permissive texts often *mention* the GPL
_COPYLEFT = ("AGPL-3.0", "LGPL-3.0", "LGPL-2.1", "GPL-3.0", "GPL-2.0", "MPL-2.0", "EPL-2.0", "EPL-1.0")

# (SPDX id, phrases that must all occur), first match wins.
_TEXT_RULES: list[tuple[str, tuple[str, ...]]] = [
    # permissive grants first: their phrases are specific, while permissive files often *mention* the GPL
    ("Python-2.0", ("python software foundation license",)),
    ("Apache-2.0", ("apache license", "version 2.0")),
    ("BSL-1.0", ("boost software license",)),
    ("Unlicense", ("free and unencumbered software released into the public domain",)),
    ("CC0-1.0", ("cc0 1.0 universal",)),
    ("ISC", ("permission to use, copy, modify, and/or distribute this software for any purpose",)),
    ("ISC", ("permission to use, copy, modify, and distribute this software for any purpose", "isc")),
    ("MIT", ("permission is hereby granted, free of charge, to any person obtaining a copy",)),
    ("Zlib", ("provided 'as-is', without any express or implied warranty",
              "permission is granted to anyone to use this software for any purpose")),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "neither the name")),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "may not be used to endorse")),
    ("BSD-2-Clause", ("redistribution and use in source and binary forms",)),
    ("AGPL-3.0", ("gnu affero general public license",)),
    ("LGPL-3.0", ("gnu lesser general public license", "version 3")),
    ("LGPL-2.1", ("gnu lesser general public license", "version 2.1")),
    ("LGPL-2.1", ("gnu library general public license",)),
    ("GPL-3.0", ("gnu general public license", "version 3")),
    ("GPL-2.0", ("gnu general public license", "version 2")),
    ("MPL-2.0", ("mozilla public license", "2.0")),
    ("EPL-2.0", ("eclipse public license", "2.0")),
    ("EPL-1.0", ("eclipse public license",)),
    ("CC-BY-NC-4.0", ("attribution-noncommercial",)),
    ("WTFPL", ("do what the fuck you want to public license",)),
]


def normalise_spdx(expression: str) -> str:
    """`MIT OR Apache-2.0` stays an expression; a lone id loses a trailing `+` / `-only` / `-or-later` spelling."""
    expr = " ".join(expression.split())
    for suffix in ("-only", "-or-later"):
        if expr.endswith(suffix) and " " not in expr:
            expr = expr[: -len(suffix)]
    return expr


def spdx_from_header(text: str) -> str | None:
    """The SPDX expression of a file's headers; several (a bundled or amalgamated file) must all be honoured."""
    found = list(dict.fromkeys(normalise_spdx(m) for m in SPDX_HEADER.findall(text[:HEADER_CHARS]) if m.strip()))
    if len(found) < 2:
        return found[0] if found else None
    return " AND ".join(f"({e})" if " " in e and not e.startswith("(") else e for e in found)


def license_from_text(text: str) -> str | None:
    """The SPDX id of a licence file's text, or None when no rule recognises it."""
    header = spdx_from_header(text)
    if header:
        return header
    flat = " ".join(text.lower().replace("\u2019", "'").split())
    for spdx, phrases in _TEXT_RULES:
        haystack = flat[:TITLE_CHARS] if spdx in _COPYLEFT else flat
        if all(p in haystack for p in phrases):
            return spdx
    stripped = text.strip()
    if stripped and len(stripped) < 40 and re.fullmatch(r"[A-Za-z0-9.+\-]+", stripped):
        return normalise_spdx(stripped)  # a LICENSE file holding only an id, e.g. "MIT"
    return None


LICENSE_READ_BYTES = 200_000


@lru_cache(maxsize=4096)
def directory_license(directory: Path, root: Path | None = None) -> str | None:
    """The licence declared by LICENSE/COPYING files directly in `directory` (several distinct -> `A AND B`).

    Read below `root` (default: `directory` itself) without following links: a LICENSE that is a symlink, or a
    directory reached through one, is not read (data_pipeline/sources/confined.py)."""
    root = directory if root is None else root
    rel_dir = "" if directory == root else directory.relative_to(root).as_posix()
    found: list[str] = []
    try:
        with confined.open_dir(root, rel_dir) as fd:
            names = sorted(n for n in os.listdir(fd) if LICENSE_FILE.match(n))
    except OSError:
        return None
    for name in names:
        try:
            data = confined.read_bytes(root, f"{rel_dir}/{name}" if rel_dir else name, LICENSE_READ_BYTES)
        except OSError:
            continue  # a link, a directory, unreadable: no licence from it
        spdx = license_from_text(data.decode("utf-8", errors="replace"))
        if spdx and spdx not in found:
            found.append(spdx)
    if not found:
        return None
    return found[0] if len(found) == 1 else " AND ".join(found)


def repository_license(file_path: Path, root: Path) -> str | None:
    """The licence of the nearest LICENSE/COPYING file at or above the file's directory, up to `root`."""
    return _tree_license(file_path.parent, root)


@lru_cache(maxsize=4096)
def _tree_license(directory: Path, root: Path) -> str | None:
    """repository_license once per directory (the files of a directory share it; the walk up costs ~20 us)."""
    try:
        parts = directory.relative_to(root).parts
    except ValueError:  # not below root: its own directory only
        return directory_license(directory, root)
    for depth in range(len(parts), -1, -1):  # by index: `root in directory.parents` is quadratic in the depth
        spdx = directory_license(root.joinpath(*parts[:depth]), root)
        if spdx is not None:
            return spdx
    return None
