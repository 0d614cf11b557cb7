"""Directory and git-repository sources: list the files of a tree, turn each into a Document or a drop reason.

Nothing is skipped silently except version-control internals (`.git`, `.hg`, `.svn`): every other entry either
becomes a document or comes back as a `Skipped` with its reason (vendored, generated, binary, unreadable_dir ...).
Everything is read through `confined` (no symlink or `..` is followed out of the root): a link is a Skipped with
its link reason, never read.
"""
from __future__ import annotations

import fnmatch
import os
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from data_pipeline.records import Document
from data_pipeline.sources import confined
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
    count: int = 1  # the inputs it stands for: a part of a table file that could not be read is one entry


GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}


def git_dir_of(root: Path, rel_dir: str) -> str | None:
    """The relative path of the git directory of the repository at `rel_dir`: its `.git` directory, or the directory
    a `.git` file (`gitdir: PATH`, submodules and worktrees) names when that lies inside `root`; else None."""
    dot_git = f"{rel_dir}/.git" if rel_dir else ".git"
    st = confined.lstat(root, dot_git)
    if stat.S_ISDIR(st.st_mode):
        return dot_git
    if not stat.S_ISREG(st.st_mode):
        return None
    line = confined.read_bytes(root, dot_git, 4096).decode("utf-8", "surrogateescape").strip()
    if not line.startswith("gitdir:"):
        return None
    target = os.path.normpath(os.path.join(root, rel_dir, line[len("gitdir:"):].strip()))
    if not confined.within(root, target) or target == str(root):
        return None  # the repository's data lies outside the input: not read
    return os.path.relpath(target, root).replace(os.sep, "/")


def git_tracked_files(root: Path, rel_dir: str = "") -> list[str] | None:
    """`git ls-files` of the repository at `rel_dir` below `root` (tracked files, as committed or staged); None when
    it cannot be listed. git reads a private copy of the index (and split-index parts), copied without following
    links, with an empty config: nothing of the repository's config (includes, worktree) or of links is followed."""
    try:
        git_dir = git_dir_of(root, rel_dir)
        if git_dir is None:
            return None
        with tempfile.TemporaryDirectory(prefix="refact-git-") as tmp:
            private = Path(tmp)
            for sub in ("objects", "refs", "worktree"):
                (private / sub).mkdir()
            (private / "HEAD").write_text("ref: refs/heads/main\n")
            with confined.open_dir(root, git_dir) as fd:
                names = [n for n in os.listdir(fd) if n == "index" or n.startswith("sharedindex.")]
            if "index" not in names:
                return []  # a repository with nothing staged yet
            for name in names:
                (private / name).write_bytes(confined.read_bytes(root, f"{git_dir}/{name}"))
            env = {**os.environ, **GIT_ENV, "GIT_DIR": tmp, "GIT_WORK_TREE": str(private / "worktree"), "HOME": tmp}
            out = subprocess.run(["git", "ls-files", "-z", "--cached"], capture_output=True, check=True, timeout=600,
                                 env=env, cwd=tmp).stdout
    except (OSError, subprocess.SubprocessError):
        return None  # no git binary, a broken or linked-out index: the directory is walked instead
    return [os.fsdecode(p) for p in out.split(b"\0") if p]


@dataclass
class Listing:
    """What a walk found: files to read (relative paths) and entries that could not even be listed."""

    files: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)


def walk(root: Path, rules: FileRules) -> Listing:
    """Every entry below `root`, sorted, read through directory descriptors (no link is followed, no PATH_MAX limit
    on depth). A git repository met (the root or a clone below it) contributes its tracked files when
    `rules.use_git` and its index can be read; a directory that cannot be listed is an `unreadable_dir` entry."""
    out = Listing()
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        prefix = f"{rel_dir}/" if rel_dir else ""
        try:
            with confined.open_dir(root, rel_dir) as fd:
                entries = [(e.name, e.is_dir(follow_symlinks=False), _size(e)) for e in os.scandir(fd)]
        except confined.Refused as exc:  # a directory that turned into a link since its parent was listed
            out.skipped.append(Skipped(exc.link, exc.reason))
            continue
        except OSError as exc:
            out.skipped.append(Skipped(rel_dir or ".", "unreadable_dir", meta={"error": type(exc).__name__}))
            continue
        if rules.use_git and any(name == ".git" for name, _, _ in entries):
            tracked = git_tracked_files(root, rel_dir)
            if tracked is not None:
                for rel in (prefix + p for p in tracked):
                    out.files.append(rel)
                    out.sizes[rel] = _lstat_size(root, rel)
                continue
        for name, is_dir, size in entries:
            if is_dir and name in VCS_DIRS:
                continue
            if is_dir:
                pending.append(prefix + name)
            else:
                out.files.append(prefix + name)
                out.sizes[prefix + name] = size
    out.files.sort()
    out.skipped.sort(key=lambda s: s.path)
    return out


def _size(entry: os.DirEntry) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except OSError:
        return 0  # gone since the listing: reading it will say so


def _lstat_size(root: Path, rel: str) -> int:
    try:
        return confined.lstat(root, rel).st_size
    except OSError:
        return 0  # a link on the way or gone: reading it will say so


def list_files(root: Path, rules: FileRules) -> list[str]:
    """Relative POSIX paths of the files `walk` finds, sorted."""
    return walk(root, rules).files


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
    """One file -> a Document, or a Skipped with the reason. Never raises for a bad file, never follows a link."""
    parts = rel.split("/")
    try:
        with confined.open_file(root, rel) as (fd, st):
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
            data = confined.read_fd(fd, rules.max_file_bytes + 1)
            if len(data) > rules.max_file_bytes:  # grew since the stat
                return Skipped(rel, "too_large", len(data))
    except confined.Refused as exc:
        return Skipped(rel, exc.reason)
    except OSError as exc:
        return Skipped(rel, "unreadable", meta={"error": type(exc).__name__})
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
    if confined.is_undecodable(rel):
        meta["path_bytes"] = confined.raw_hex(rel)  # the exact name; `path` shows it escaped
    if kind == "text":
        meta["format"] = lang
        lang = None  # for text, lang is the natural language (the English filter fills it in)
    license_id = spdx_from_header(text) or repository_license(root / rel, root)
    path = confined.shown(rel)
    return Document(id=f"{source}/{path}", text=text, kind=kind, lang=lang, source=source, path=path,
                    license=license_id, meta=meta)


def read_files(root: Path, rels: list[str], source: str, rules: FileRules) -> Iterator[Document | Skipped]:
    for rel in rels:
        yield read_file(root, rel, source, rules)
