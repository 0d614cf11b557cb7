"""Atomic file writes, the one helper every writer in the project uses; the one reader of the JSON state files they
write (`read_json`); and the one directory lock (`hold_lock`).

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
from typing import IO, Any, Callable, Iterator

import xxhash

_WRITTEN: list[Path] | None = None  # what `atomic_path` renamed into place inside `recorded_writes`


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
        if _WRITTEN is not None:
            _WRITTEN.append(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def recorded_writes() -> Iterator[list[Path]]:
    """Within (in this process): the yielded list gets every path `atomic_path` renames into place, the files a unit
    of work wrote, which its completion record lists with `file_record`."""
    global _WRITTEN
    outer, _WRITTEN = _WRITTEN, []
    try:
        yield _WRITTEN
    finally:
        _WRITTEN = outer


def file_record(path: str | Path) -> list[Any]:
    """[size in bytes, xxh3-64 hex digest] of a file: kept in a completion record, compared when the work is resumed
    (a power cut can leave a renamed file empty or short, a copy another run's file). ~10 GB/s: a re-read from the
    page cache costs little next to writing the file."""
    digest = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return [os.path.getsize(path), digest.hexdigest()]


def record_problem(path: Path, recorded: Any) -> str | None:
    """Why `path` is not the file `recorded` (a `file_record`) describes, or None: missing, another size, another
    content; cheap first (a stat), the hash only when the size is right."""
    if not path.is_file():
        return f"{path} is missing"
    size = path.stat().st_size
    if not (isinstance(recorded, list) and len(recorded) == 2):
        return f"the record of {path} is damaged: {recorded!r}"
    if size != recorded[0]:
        return f"{path} is damaged: {size} bytes, {recorded[0]} when written (a crash, a full disk, a cut copy?)"
    if file_record(path)[1] != recorded[1]:
        return f"{path} is damaged: not the content written there (xxh3 differs: another run's file or an edit?)"
    return None


def write_bytes_atomic(path: str | Path, data: bytes, fsync: bool = False) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str, fsync: bool = False) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(path: str | Path, data: Any, fsync: bool = False) -> None:
    """JSON (sorted keys, indented, UTF-8) written atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", fsync=fsync)


class DamagedFile(ValueError):
    """A JSON file the program wrote and reads back is empty, cut short, not JSON or not the shape it writes: a node
    crash, a full disk, a power cut (XFS and Lustre can leave a renamed file empty), a copy cut short, a hand edit."""


def read_json(path: str | Path, shape: type = dict, keys: tuple[str, ...] = ()) -> Any:
    """The JSON in `path`, a file this program wrote: DamagedFile, naming the file and what is wrong with it, when it
    is empty, not JSON, not a `shape` (dict or list) or a dict without one of `keys`. A missing file: OSError."""
    raw = Path(path).read_bytes()
    if not raw.strip():
        raise DamagedFile(f"{path} is damaged: empty (a crash or a full disk while it was written?)")
    try:
        data = json.loads(raw)
    except ValueError as err:  # UnicodeDecodeError is one too
        raise DamagedFile(f"{path} is damaged: not JSON ({err})") from None
    if not isinstance(data, shape):
        raise DamagedFile(f"{path} is damaged: a JSON {type(data).__name__}, not the {shape.__name__} written there")
    missing = [key for key in keys if key not in data]
    if missing:
        raise DamagedFile(f"{path} is damaged: no {', '.join(missing)} key")
    return data


def read_json_or_none(path: str | Path, log: Callable[[str], None], then: str, shape: type = dict,
                      keys: tuple[str, ...] = ()) -> Any:
    """`read_json` for a file the program can make again: None when it is missing or damaged, the latter said in one
    line ending in `then` (what the caller does instead, e.g. "tokenizing again")."""
    try:
        return read_json(path, shape, keys)
    except FileNotFoundError:
        return None
    except DamagedFile as err:
        log(f"{err}; {then}")
        return None


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
