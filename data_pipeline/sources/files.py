"""Directory and git-repository sources: list the files of a tree, turn each into a Document or a drop reason.

Nothing is skipped silently except version-control internals (`.git`, `.hg`, `.svn`): every other file either
becomes a document or comes back as a `Skipped` with its reason (vendored, generated, binary, broken_symlink ...).
"""
from __future__ import annotations

import fnmatch
import os
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from data_pipeline.records import Document
from data_pipeline.sources.languages import classify
from data_pipeline.sources.licenses import LICENSE_FILE, repository_license, spdx_from_header

VCS_DIRS = {".git", ".hg", ".svn"}


@dataclass(frozen=True)
class FileRules:
    """What the walker reads and what it refuses; built from the `ingest` config section."""

    max_file_bytes: int = 1_000_000
    minified_line_chars: int = 5_000  # one line this long is minified or generated, not hand-written
    binary_probe_bytes: int = 8192
    fallback_encoding: str | None = "cp1252"  # legacy single-byte files; None drops every non-UTF-8 file
    vendored_dirs: frozenset[str] = frozenset({"node_modules", "vendor", "third_party", "bower_components"})
    generated_globs: tuple[str, ...] = ("*.min.js", "*.min.css", "*_pb2.py", "*.pb.go", "package-lock.json")
    use_git: bool = True  # list a repository's tracked files (git ls-files) rather than everything on disk

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> "FileRules":
        return cls(
            max_file_bytes=int(section.get("max_file_bytes", cls.max_file_bytes)),
            minified_line_chars=int(section.get("minified_line_chars", cls.minified_line_chars)),
            fallback_encoding=section.get("fallback_encoding", cls.fallback_encoding),
            vendored_dirs=frozenset(section.get("vendored_dirs", cls.vendored_dirs)),
            generated_globs=tuple(section.get("generated_globs", cls.generated_globs)),
            use_git=bool(section.get("use_git", cls.use_git)),
        )


@dataclass(frozen=True)
class Skipped:
    """A file that did not become a document, and why."""

    path: str
    reason: str
    nbytes: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


def git_tracked_files(root: Path) -> list[str] | None:
    """`git ls-files` of a repository (tracked files, as committed or staged); None when git cannot list it."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached"], capture_output=True, check=True,
                             timeout=600).stdout
    except (OSError, subprocess.SubprocessError):
        return None  # no git binary or a broken repository: walk the tree instead
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def list_files(root: Path, rules: FileRules) -> list[str]:
    """Relative POSIX paths under `root`, sorted. Any git repository in the tree (the root or a cloned repository
    below it) contributes its tracked files only, when `rules.use_git` and git can list it."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if rel_dir == "." else rel_dir + "/"
        if rules.use_git and ".git" in dirnames + filenames:
            tracked = git_tracked_files(Path(dirpath))
            if tracked is not None:
                found += [prefix + p for p in tracked]
                dirnames[:] = []
                continue
        dirnames[:] = [d for d in dirnames if d not in VCS_DIRS]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            found.append(prefix + name)
    return sorted(found)


def decode(data: bytes, fallback: str | None) -> tuple[str | None, str]:
    """(text, encoding) or (None, reason). UTF-8 first; a file mixing valid multi-byte UTF-8 with stray bytes is
    'mixed' (decoding it either way corrupts part of it); otherwise the single-byte fallback."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    if fallback is None:
        return None, "encoding:not_utf8"
    if any(b >= 0x80 for b in data) and _has_utf8_multibyte(data):
        return None, "encoding:mixed"
    try:
        return data.decode(fallback), fallback
    except (UnicodeDecodeError, LookupError):
        return None, "encoding:undecodable"


def _has_utf8_multibyte(data: bytes) -> bool:
    text = data.decode("utf-8", errors="ignore")
    return any(ord(c) > 0x7F for c in text)


def longest_line(text: str) -> int:
    return max((len(line) for line in text.split("\n")), default=0)


def read_file(root: Path, rel: str, source: str, rules: FileRules) -> Document | Skipped:
    """One file -> a Document, or a Skipped with the reason. Never raises for a bad file."""
    path = root / rel
    parts = rel.split("/")
    try:
        st = os.lstat(path)
    except OSError as exc:
        return Skipped(rel, "unreadable", meta={"error": type(exc).__name__})
    if stat.S_ISLNK(st.st_mode):
        return Skipped(rel, "symlink" if path.exists() else "broken_symlink")
    if not stat.S_ISREG(st.st_mode):
        return Skipped(rel, "not_regular_file")
    if any(p in rules.vendored_dirs for p in parts[:-1]):
        return Skipped(rel, "vendored", st.st_size)
    if any(fnmatch.fnmatch(parts[-1].lower(), g) for g in rules.generated_globs):
        return Skipped(rel, "generated", st.st_size)
    if LICENSE_FILE.match(parts[-1]):
        return Skipped(rel, "license_file", st.st_size)  # read for the licence of its tree, not a document
    if st.st_size == 0:
        return Skipped(rel, "empty")
    if st.st_size > rules.max_file_bytes:
        return Skipped(rel, "too_large", st.st_size)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Skipped(rel, "unreadable", st.st_size, {"error": type(exc).__name__})
    if b"\0" in data[: rules.binary_probe_bytes]:
        return Skipped(rel, "binary", len(data))
    text, encoding = decode(data, rules.fallback_encoding)
    if text is None:
        return Skipped(rel, encoding, len(data))
    if not text.strip():
        return Skipped(rel, "empty", len(data))
    kind_lang = classify(parts[-1], text[:256])
    if kind_lang is None:
        return Skipped(rel, "unknown_type", len(data))
    if longest_line(text) > rules.minified_line_chars:
        return Skipped(rel, "minified", len(data))
    kind, lang = kind_lang
    meta: dict[str, Any] = {"bytes": len(data)}
    if encoding != "utf-8":
        meta["encoding"] = encoding
    if kind == "text":
        meta["format"] = lang
        lang = None  # for text, lang is the natural language (the English filter fills it in)
    license_id = spdx_from_header(text) or repository_license(path, root)
    return Document(id=f"{source}/{rel}", text=text, kind=kind, lang=lang, source=source, path=rel,
                    license=license_id, meta=meta)


def read_files(root: Path, rels: list[str], source: str, rules: FileRules) -> Iterator[Document | Skipped]:
    for rel in rels:
        yield read_file(root, rel, source, rules)
