"""Directory and git-repository sources: list the files of a tree, turn each into a Document or a drop reason.

Nothing is skipped silently except version-control internals (`.git`, `.hg`, `.svn`): every other entry either
becomes a document or comes back as a `Skipped` with its reason (vendored, generated, binary, unreadable_dir ...).
Everything is read through `confined` (no symlink or `..` is followed out of the root): a link is a Skipped with
its link reason, never read.
"""
from __future__ import annotations

import fnmatch
import os
import re
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from data_pipeline.records import Document
from data_pipeline.sources import confined
from data_pipeline.sources.languages import classify
from data_pipeline.sources.licenses import LICENSE_FILE, repository_license, spdx_from_header

VCS_DIRS = {".git", ".hg", ".svn"}
# Every path is opened one component at a time from the root, so a chain of nested directories costs the square of
# its depth: deeper ones (no hand-made tree is) are one `too_deep` entry instead of hours of opens.
MAX_DEPTH = 1000


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
# A real index holds ~100 bytes per file: 1 GiB is ten million files. A bigger one (a sparse file claiming
# terabytes) is not copied; the directory is walked instead.
MAX_INDEX_BYTES = 1 << 30
GITLINK = "160000"  # the mode of a submodule in the index


def git_env(git_dir: str) -> dict[str, str]:
    """The environment of our git: none of the caller's GIT_* variables (a GIT_INDEX_FILE, GIT_CONFIG_COUNT/KEY/VALUE
    or GIT_CONFIG_PARAMETERS set by a hook or `git -c` would pick another index or a program to run, e.g.
    core.fsmonitor), no system or global config, and HOME a private directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return {**env, **GIT_ENV, "GIT_DIR": git_dir, "GIT_WORK_TREE": os.path.join(git_dir, "worktree"),
            "HOME": git_dir}


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


def git_tracked_files(root: Path, rel_dir: str = "") -> list[tuple[str, str]] | None:
    """(mode, path) of each path in the index of the repository at `rel_dir` below `root` (tracked files, as
    committed or staged; a conflicted file once); None when it cannot be listed. git reads a private copy of the index
    (and split-index parts), copied without following links, with an empty config and no GIT_* variable of ours:
    nothing of the repository's config (includes, worktree, fsmonitor, hooks) or of links is followed or run."""
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
                if not confined.copy_file(root, f"{git_dir}/{name}", private / name, MAX_INDEX_BYTES):
                    return None
            out = subprocess.run(["git", "ls-files", "-z", "--cached", "--stage"], capture_output=True, check=True,
                                 timeout=600, env=git_env(tmp), cwd=tmp).stdout
    except (OSError, subprocess.SubprocessError):
        return None  # no git binary, a broken or linked-out index: the directory is walked instead
    tracked: dict[str, str] = {}
    for entry in out.split(b"\0"):
        if entry:
            info, _, path = entry.partition(b"\t")  # `MODE OBJECT STAGE\tPATH`
            tracked.setdefault(os.fsdecode(path), info.split(b" ")[0].decode("ascii", "replace"))
    return [(mode, path) for path, mode in tracked.items()]


def tracked_entry(root: Path, rel: str, mode: str) -> str | Skipped:
    """What a path of an index is: a file to read ("file"), a submodule checkout to walk ("walk"), or a Skipped.
    A path into version-control internals (`.git/config`: git itself never stages one) is `unsafe_path`."""
    if any(p.lower() in VCS_DIRS for p in rel.split("/")):
        return Skipped(rel, "unsafe_path")
    if mode != GITLINK:
        return "file"
    try:
        confined.lstat(root, f"{rel}/.git")
    except FileNotFoundError:
        return Skipped(rel, "submodule_not_checked_out")
    except OSError:
        return "file"  # a link or an unsafe path on the way: reading it says which
    return "walk"


@dataclass
class Listing:
    """What a walk found: files to read (relative paths) and entries that could not even be listed."""

    files: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)


def walk(root: Path, rules: FileRules, output: str | None = None) -> Listing:
    """Every entry below `root`, sorted, read through directory descriptors (no link is followed, no PATH_MAX limit
    on depth). A git repository met (the root or a clone below it) contributes its tracked files when
    `rules.use_git` and its index can be read; a directory that cannot be listed is an `unreadable_dir` entry.
    `output`: the pipeline's output directory when it lies below `root` (relative): one `pipeline_output` entry,
    never read (a rerun would otherwise train on the last run's stats, logs and model samples)."""
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
                for mode, rel in ((m, prefix + p) for m, p in tracked):
                    what = tracked_entry(root, rel, mode)
                    if output and (rel == output or rel.startswith(output + "/")):
                        what = Skipped(rel, "pipeline_output")
                    if isinstance(what, Skipped):
                        out.skipped.append(what)
                    elif what == "walk":
                        pending.append(rel)  # a submodule: its own repository, listed from its own index
                    else:
                        out.files.append(rel)
                        out.sizes[rel] = _lstat_size(root, rel)
                continue
        for name, is_dir, size in entries:
            if is_dir and name in VCS_DIRS:
                continue
            if is_dir and prefix + name == output:
                out.skipped.append(Skipped(output, "pipeline_output"))
                continue
            if is_dir and prefix.count("/") >= MAX_DEPTH:
                out.skipped.append(Skipped(prefix + name, "too_deep"))
            elif is_dir:
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


def decode(data: bytes, fallback: str | None) -> tuple[str | None, str]:
    """(text, encoding) or (None, reason). UTF-8 first; a file mixing valid multi-byte UTF-8 with stray bytes is
    'mixed' (decoding it either way corrupts part of it); otherwise the single-byte fallback."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    if fallback is None:
        return None, "encoding:not_utf8"
    if not data.decode("utf-8", errors="ignore").isascii():  # valid multi-byte UTF-8 among stray bytes
        return None, "encoding:mixed"
    try:
        return data.decode(fallback), fallback
    except (UnicodeDecodeError, LookupError):
        return None, "encoding:undecodable"


def longest_line(text: str) -> int:
    return max(map(len, text.split("\n")))  # split gives at least one line


@lru_cache(maxsize=16)
def _generated_matcher(globs: tuple[str, ...]) -> Callable[[str], Any]:
    """One regex for all of `generated_globs` (fnmatch's own translation): one match per file, not one per glob."""
    if not globs:
        return lambda name: None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)).match


def read_file(root: Path, rel: str, source: str, rules: FileRules) -> Document | Skipped:
    """One file -> a Document, or a Skipped with the reason. Never raises for a bad file, never follows a link."""
    parts = rel.split("/")
    try:
        with confined.open_file(root, rel) as (fd, st):
            if any(p in rules.vendored_dirs for p in parts[:-1]):
                return Skipped(rel, "vendored", st.st_size)
            if _generated_matcher(rules.generated_globs)(parts[-1].lower()):
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
    if len(text) > rules.minified_line_chars and longest_line(text) > rules.minified_line_chars:
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
