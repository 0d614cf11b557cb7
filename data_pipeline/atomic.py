"""Atomic file writes: the one helper every writer in the project uses.

A file is written under a hidden temporary name in its own directory and renamed into place, so a reader never
sees half a file and a kill at any moment leaves either the old file or the new one (plus, at worst, a hidden
temporary of the killed process, which nothing reads and which may be deleted). Temporary names start with "." and
end in ".tmp-<pid>", so they match no output glob (`part-*.parquet`, `*.bin`); the pid keeps two writers of the same
name (Slurm tasks on a shared filesystem) apart, which is also why a later write does not remove another pid's.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


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
