"""The output directory is held by one local refact-pipeline run at a time, or shared by the array tasks of a run.

Two local runs started into one output both exited 0 after doing every unit twice, and the one with
keep_intermediate=false deleted the documents the other was still reading. A local run now holds an exclusive
`flock` on DIR/.refact-pipeline.lock for its whole run, and SLURM array tasks (task=i n_tasks=N), which share a
directory by design, hold it shared: a second local run, or a local run beside array tasks, is refused in one line.
The kernel drops the lock when the process ends, however it ends, so a rerun after a kill -9 has nothing to clean up.
As refact_train/run_dir.py does for a training run's directory.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import Callable, IO

LOCK_NAME = ".refact-pipeline.lock"


class OutputInUse(RuntimeError):
    """The output directory is held by another run: said in one line."""


def lock_output(root: Path, shared: bool, log: Callable[[str], None] = print) -> IO[str] | None:
    """Hold ROOT's lock until the returned file is closed (shared: an array task); None, with a warning, where the
    filesystem has no locks."""
    path = root / LOCK_NAME
    try:
        f = open(path, "a+")
    except OSError as err:
        raise OutputInUse(f"output={root} is not writable: {err.strerror} ({path}); fix its permissions or give "
                          f"another output=") from None
    try:
        fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "array tasks (task=i n_tasks=N)"
        f.close()
        raise OutputInUse(f"output={root} is in use by another refact-pipeline ({holder}): two runs into one "
                          f"directory redo each other's work and delete what the other reads; wait for it to end or "
                          f"give another output=") from None
    except OSError as err:
        f.close()
        if err.errno not in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise
        log(f"[output] {root}: the filesystem has no file locks ({err.strerror}); a second run started into this "
            f"directory would not be refused")
        return None
    f.seek(0)
    f.truncate()  # a finished local run's pid is stale; array tasks share the lock and name no one
    if not shared:
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    return f
