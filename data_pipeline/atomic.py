"""Atomic file writes, the one helper every writer in the project uses; and the one directory lock (`hold_lock`).

A file is written under a hidden temporary name in its own directory and renamed into place, so a reader never
sees half a file and a kill at any moment leaves either the old file or the new one (plus, at worst, a hidden
temporary of the killed process, which nothing reads and which may be deleted). Temporary names start with "." and
end in ".tmp-<pid>", so they match no output glob (`part-*.parquet`, `*.bin`); the pid keeps two writers of the same
name (Slurm tasks on a shared filesystem) apart, which is also why a later write does not remove another pid's.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


def temp_path(path: str | Path) -> Path:
    """The hidden sibling name `path` is written under before the rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed.

    `fsync=True` flushes the file to disk before the rename (checkpoints, where a power cut must not leave an
    empty file under the final name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes, fsync: bool = False) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str, fsync: bool = False) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(path: str | Path, data: Any, fsync: bool = False) -> None:
    """JSON (sorted keys, indented, UTF-8) written atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", fsync=fsync)


class LockHeld(RuntimeError):
    """The lock is held by another process; `holder` is what that process wrote in the lock file."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


def hold_lock(path: Path, shared: bool = False) -> IO[str] | None:
    """An `flock` on the file `path` (created), held until the returned file is closed: exclusive, or shared by
    processes that all ask for shared (array tasks of one run). The kernel drops it when the process ends, however it
    ends, so a kill -9 leaves no stale lock. LockHeld when another process holds it; OSError when the file cannot be
    opened; None where the filesystem has no locks (Lustre without -o flock): the caller says so."""
    f = open(path, "a+")
    try:
        fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        raise LockHeld(holder) from None
    except OSError as err:
        f.close()
        if err.errno not in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise
        return None
    f.seek(0)
    f.truncate()  # a finished holder's pid is stale; shared holders name no one
    if not shared:
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    return f
