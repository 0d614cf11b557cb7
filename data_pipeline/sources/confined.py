"""Reads that stay inside an input root: no symlink and no `..` is ever followed out of it.

Every path below a root is opened one component at a time from the root's directory descriptor with O_NOFOLLOW, so
a symlinked file or directory, or a `..`, stops the open before anything behind it is read (no race between a check
and the open either). The entry is then refused with a reason that `classify_link` gives from the link alone. Hard
links are ordinary files of the tree and are read. Paths are `str` with undecodable bytes as surrogates
(os.fsdecode); `shown` escapes them for output files, `raw_hex` keeps the exact bytes.
"""
from __future__ import annotations

import errno
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then says it is not a regular file.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Refused(OSError):
    """An entry that is not read: `reason` is its drop reason, `link` the relative path of the offending component."""

    def __init__(self, reason: str, link: str):
        super().__init__(f"{reason}: {link}")
        self.reason = reason
        self.link = link


def shown(rel: str) -> str:
    """A path or name as output files show it: valid UTF-8 as is, other bytes escaped (`caf\\xe9.py`), and so are
    lone surrogates from JSON escapes (`\\ud800`), which UTF-8 cannot hold."""
    try:
        return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return rel.encode("utf-8", "backslashreplace").decode("utf-8")


def is_undecodable(rel: str) -> bool:
    return shown(rel) != rel


def raw_hex(rel: str) -> str:
    """The exact bytes of a path, losslessly (`bytes.fromhex(...)` gives them back)."""
    return os.fsencode(rel).hex()


def split_rel(rel: str) -> list[str]:
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise Refused("unsafe_path", rel)  # absolute, empty, `.` or `..` components: never resolved
    return parts


def within(root: Path, target: str) -> bool:
    return target == str(root) or target.startswith(str(root).rstrip("/") + "/")


def classify_link(root: Path, rel: str) -> str:
    """The drop reason of the symlink at `rel`, decided without reading what it points to: `symlink_outside_input`
    when its target resolves outside `root` (that target is not even stat'ed), else `symlink_loop`,
    `broken_symlink`, or `symlink` (a link to a file of the input, which is read under its own name)."""
    target = os.path.realpath(os.path.join(root, rel))
    if not within(root, target):
        return "symlink_outside_input"
    try:
        os.stat(os.path.join(root, rel))
    except OSError as exc:
        return "symlink_loop" if exc.errno == errno.ELOOP else "broken_symlink"
    return "symlink"


def _refuse_component(root: Path, parent_fd: int, name: str, rel: str, exc: OSError) -> Refused | OSError:
    """Why opening `name` in `parent_fd` failed: a symlink is refused with its reason, anything else re-raised."""
    try:
        st = os.lstat(name, dir_fd=parent_fd)
    except OSError:
        return exc
    if stat.S_ISLNK(st.st_mode):
        return Refused(classify_link(root, rel), rel)
    return exc


@contextmanager
def open_dir(root: Path, rel_dir: str = "") -> Iterator[int]:
    """A descriptor of the directory `rel_dir` below `root` ("" = root), opened without following any link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        done: list[str] = []
        for name in split_rel(rel_dir) if rel_dir else []:
            done.append(name)
            try:
                child = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refuse_component(root, fd, name, "/".join(done), exc) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def open_regular(root: Path, rel: str) -> tuple[int, os.stat_result]:
    """(descriptor, fstat) of the regular file `rel` below `root`; the caller closes it. Raises Refused for a link or
    an unsafe path on the way and `not_regular_file` for a directory, FIFO, socket or device (never opened)."""
    parts = split_rel(rel)
    with open_dir(root, "/".join(parts[:-1])) as parent:
        st = os.lstat(parts[-1], dir_fd=parent)
        if stat.S_ISLNK(st.st_mode):
            raise Refused(classify_link(root, rel), rel)
        if not stat.S_ISREG(st.st_mode):
            raise Refused("not_regular_file", rel)
        try:
            fd = os.open(parts[-1], FILE_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise _refuse_component(root, parent, parts[-1], rel, exc) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # replaced between the lstat and the open
        os.close(fd)
        raise Refused("not_regular_file", rel)
    return fd, st


@contextmanager
def open_file(root: Path, rel: str) -> Iterator[tuple[int, os.stat_result]]:
    """`open_regular` as a context manager that closes the descriptor."""
    fd, st = open_regular(root, rel)
    try:
        yield fd, st
    finally:
        os.close(fd)


def open_binary(root: Path, rel: str | None) -> BinaryIO:
    """A binary file object: the declared input `root` itself (rel None), or the file `rel` below it, confined."""
    if rel is None:
        return open(root, "rb")
    fd, _ = open_regular(root, rel)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_fd(fd: int, limit: int | None = None) -> bytes:
    """All bytes of an open regular file (at most `limit`)."""
    chunks, total = [], 0
    while limit is None or total < limit:
        chunk = os.read(fd, 1 << 20 if limit is None else min(1 << 20, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def read_bytes(root: Path, rel: str, limit: int | None = None) -> bytes:
    """The content of the regular file `rel` below `root`; Refused for a link / unsafe path, `not_regular_file`
    for anything else that is not a regular file."""
    with open_file(root, rel) as (fd, _):
        return read_fd(fd, limit)


def copy_file(root: Path, rel: str, dest: Path, limit: int) -> bool:
    """Copy the regular file `rel` below `root` to `dest` in chunks (never all in memory); False, and `dest` not
    left behind, when it holds more than `limit` bytes (a sparse file can claim terabytes)."""
    with open_file(root, rel) as (fd, st), open(dest, "wb") as out:
        copied = 0
        while st.st_size <= limit and copied <= limit and (chunk := os.read(fd, 1 << 20)):
            copied += len(chunk)
            out.write(chunk)
    if st.st_size > limit or copied > limit:  # over the limit, or grew past it since the stat
        dest.unlink()
        return False
    return True


def lstat(root: Path, rel: str) -> os.stat_result:
    """lstat of `rel` with its parent directories opened without following links."""
    parts = split_rel(rel)
    with open_dir(root, "/".join(parts[:-1])) as parent:
        return os.lstat(parts[-1], dir_fd=parent)
