"""The run directory: checked before any work, and held by one refact-train at a time.

Two runs started into one run_dir interleaved their steps in metrics.jsonl, overwrote config.yaml, deleted each
other's temporary checkpoint directories and resumed from each other's checkpoints, both exiting 0. Rank 0 now holds
an exclusive `flock` on RUN_DIR/.refact-train.lock for the whole run: the kernel drops it when the process ends, however
it ends (a kill -9 leaves no stale lock), so a rerun after a crash or a preemption never has to clean anything up.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from data_pipeline.atomic import LockHeld, hold_lock

LOCK_NAME = ".refact-train.lock"
RUN_FILES = ("config.yaml", "metrics.jsonl")  # what the run writes or appends to directly in run_dir


class RunDirError(ValueError):
    """A run_dir this run cannot use: said in one line."""


def check_run_dir(run_dir: Path, data_path: str | None) -> None:
    """A directory (created if missing) that is not the training data's, whose own files can be written."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run_dir={run_dir} is a file, not a directory; give a directory (created if missing)")
    if data_path and Path(data_path).is_dir():
        data = Path(data_path).resolve()
        if run_dir.resolve() == data or data in run_dir.resolve().parents:
            # the pipeline replaces DIR/shards and DIR/heldout as a whole: a rebuild would delete the checkpoints
            raise RunDirError(f"run_dir={run_dir} is data.path={data_path} or inside it, the pipeline's directory (a "
                              f"rebuild of the shards replaces its folders with any checkpoint in them); put the run "
                              f"elsewhere")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"run_dir={run_dir} cannot be created: {err.strerror} ({err.filename})") from None
    for name in RUN_FILES:
        p = run_dir / name
        if p.exists() and not p.is_file():
            raise RunDirError(f"{p} is not a file (the run writes it): remove it or give another run_dir")
        if p.is_file() and not os.access(p, os.W_OK):
            raise RunDirError(f"{p} is not writable: fix its permissions or give another run_dir")


def lock_run_dir(run_dir: Path, log=print) -> IO[str] | None:
    """Hold RUN_DIR's lock until the returned file is closed; None (with a warning) where the filesystem has no locks."""
    path = run_dir / LOCK_NAME
    try:
        lock = hold_lock(path)
    except LockHeld as held:
        raise RunDirError(f"run_dir={run_dir} is in use by another refact-train ({held.holder or 'unknown pid'}): two "
                          f"runs in one directory overwrite each other's checkpoints and metrics; wait for it to end "
                          f"or give another run_dir") from None
    except OSError as err:
        raise RunDirError(f"run_dir={run_dir} is not writable: {err.strerror} ({path})") from None
    if lock is None:
        log(f"[run_dir] {run_dir}: the filesystem has no file locks; a second run started into this directory would "
            f"not be refused")
    return lock
