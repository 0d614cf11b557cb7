"""Runs a stage's steps: the units of each step in local worker processes, or one SLURM array task's share of them.

Local (`task=None`): every step of every stage in order, `workers` processes, tqdm bars, finished units skipped.
Array task `i` of `N`: the units whose index % N == i of the first step that is not complete yet; when that step is
complete (the other tasks are done too) it goes on to the next step, otherwise it returns and the next array job
(submitted with `--dependency=afterok`) picks up where the step left off. Same code, same files, same markers.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
from tqdm import tqdm

from data_pipeline.atomic import (DamagedFile, atomic_path, file_record, read_json, record_problem, recorded_writes,
                                  write_json_atomic)
from data_pipeline.stage import Stage, StageContext, Step
from data_pipeline.stats import RedoUnits, sum_unit_stats


class WorkerDied(RuntimeError):
    """A worker process ended without finishing its unit (SIGKILL, the OOM killer): said in one line."""


class StepError(RuntimeError):
    """`step=NAME` names no step of the stage, or a step whose earlier steps are not complete: said in one line."""


@dataclass
class StageResult:
    name: str
    complete: bool
    skipped: bool = False  # complete before this run started
    note: str = ""


def unit_done(ctx: StageContext, step: str, unit: str) -> bool:
    return ctx.marker_path(step, unit).exists()


def execute_unit(stage: Stage, ctx: StageContext, step_index: int, unit: str) -> str:
    """Run one unit, then write its stats and (last) its marker."""
    step = stage.steps[step_index]
    started = time.process_time()
    try:
        with recorded_writes() as written:
            stats = step.run(ctx, unit)
    except RedoUnits:  # a file another unit wrote is gone: that unit is done again (run_stage)
        raise
    except Exception as exc:
        raise RuntimeError(f"stage {stage.name!r} step {step.name!r} unit {unit}: {type(exc).__name__}: {exc}") from exc
    # CPU seconds per step, summed over units in stats.json: where the time goes, whatever the machine's load
    # (a streamed chain of stages measures each stage's share itself)
    stats.extra.setdefault("cpu_seconds", {step.name: round(time.process_time() - started, 3)})
    write_json_atomic(ctx.unit_stats_path(step.name, unit), stats.to_dict())
    write_marker(ctx, step.name, unit, written)
    return unit


def write_marker(ctx: StageContext, step: str, unit: str, written: list[Path]) -> None:
    """A unit's completion marker: the size and hash of each data file it wrote (`written`, paths under the output
    directory: Parquet, .npy), checked by `redo_damaged` before a later run reads them back."""
    root = ctx.root.resolve()
    files = {}
    for path in dict.fromkeys(written):
        # not a file in a temporary directory renamed since; not JSON state (read_json checks it) nor a marker
        if path.suffix not in (".json", ".done") and path.is_file() and path.resolve().is_relative_to(root):
            files[path.resolve().relative_to(root).as_posix()] = file_record(path)
    write_json_atomic(ctx.marker_path(step, unit), {"files": files})


def redo_damaged(ctx: StageContext, log: Callable[[str], None], under: Path | None = None) -> bool:
    """Check the files the finished units of `ctx`'s stage wrote (those `under` a folder, e.g. its documents) against
    their markers; a unit whose file is damaged (or whose marker is) loses its marker, said in one line, and is done
    again (a pure function of its inputs: the same files). Whether any was."""
    redo = False
    for marker in sorted((ctx.work_dir / "markers").glob("*/*.done")):
        try:
            files = read_json(marker, keys=("files",))["files"]
            problem = next(filter(None, (record_problem(ctx.root / name, record) for name, record in files.items()
                                         if under is None or (ctx.root / name).is_relative_to(under))), None)
        except FileNotFoundError:  # forgotten meanwhile by another array task
            continue
        except (DamagedFile, AttributeError) as err:
            problem = f"{err}" if isinstance(err, DamagedFile) else f"{marker} is damaged: not the record written there"
        if problem:
            log(f"[{ctx.name}] {problem}; doing unit {marker.stem} of step {marker.parent.name!r} again")
            marker.unlink(missing_ok=True)
            redo = True
    return redo


def _execute_star(args: tuple) -> str:
    return execute_unit(*args)


def run_units(stage: Stage, ctx: StageContext, step_index: int, units: list[str], workers: int,
              progress: bool = True) -> None:
    step = stage.steps[step_index]
    desc = f"{stage.name}/{step.name}"  # a chain of stages: `license..decontam/filter`
    jobs = [(stage, ctx, step_index, unit) for unit in units]
    bar = tqdm(total=len(jobs), desc=desc, unit="unit", file=sys.stderr, dynamic_ncols=True, leave=False,
               disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            _execute_star(job)
            bar.update()
    else:
        # fresh workers for a step that loads something in `prepare`; the others reuse the last step's
        pool = worker_pool(workers, fresh=type(step).prepare is not Step.prepare)
        try:
            for future in as_completed([pool.submit(_execute_star, job) for job in jobs]):
                future.result()
                bar.update()
        except BrokenProcessPool:
            # a worker killed from outside (the OOM killer, kill -9): multiprocessing.Pool waited for its unit for ever
            close_worker_pool(terminate=True)
            left = sum(not unit_done(ctx, step.name, u) for u in units)
            raise WorkerDied(f"stage {stage.name!r} step {step.name!r}: a worker process was killed (out of memory? "
                             f"see dmesg) with {left} of {len(units)} units unfinished; rerun the same command "
                             f"(finished units are kept), with fewer workers= if memory is short") from None
        except BaseException:
            close_worker_pool(terminate=True)  # the other units are not waited for
            raise
        if not _POOL.get("reuse"):
            close_worker_pool()
    bar.close()


_POOL: dict[str, Any] = {}  # this process's worker pool: {"workers": n, "pool": Pool, "reuse": bool}


@contextmanager
def reused_workers() -> Iterator[None]:
    """Within: the worker pool outlives a step, and the next step reuses it (a pool costs ~50 ms of forking)."""
    _POOL["reuse"] = True
    try:
        yield
    finally:
        close_worker_pool()
        _POOL.clear()


def worker_pool(workers: int, fresh: bool = False) -> ProcessPoolExecutor:
    """`workers` forked worker processes (forked at the first submit). fork: they inherit imported modules and what
    `prepare` loaded, so a step whose `prepare` loads something asks for fresh ones. A ProcessPoolExecutor, not a
    multiprocessing.Pool: it notices a worker that dies (BrokenProcessPool) where a Pool hangs."""
    if "pool" in _POOL and (fresh or _POOL["workers"] != workers):
        close_worker_pool()
    if "pool" not in _POOL:
        pa.array([""])  # pyarrow imports pandas on its first conversion: once here, not in every worker
        _POOL.update(workers=workers,
                     pool=ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")))
    return _POOL["pool"]


def close_worker_pool(terminate: bool = False) -> None:
    if "pool" in _POOL:
        pool = _POOL.pop("pool")
        if terminate:  # units in flight are not waited for (the executor has no public terminate before 3.14)
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


def run_stage(
    stage: Stage,
    ctx: StageContext,
    *,
    workers: int = 1,
    task: int | None = None,
    n_tasks: int | None = None,
    only_step: str | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    redo_left: int = 3,
) -> StageResult:
    """Run the stage's unfinished units (this task's share of them); `redo_left`: how many more times units whose files
    turn out damaged or missing are done again before that stops the run (a file the redo does not bring back would
    otherwise loop)."""
    if stage.complete(ctx):
        log(f"[{ctx.name}] complete, skipped")
        return StageResult(ctx.name, complete=True, skipped=True)
    redo_damaged(ctx, log)
    step_names = [s.name for s in stage.steps]
    if only_step is not None and only_step not in step_names:
        raise StepError(f"stage {ctx.name!r} has no step {only_step!r}; its steps are {step_names}")
    for i, step in enumerate(stage.steps):
        units = step.units(ctx)
        missing = [u for u in units if not unit_done(ctx, step.name, u)]
        if not missing:
            continue
        if only_step is not None and step.name != only_step:
            if step_names.index(only_step) > i:
                raise StepError(f"stage {ctx.name!r}: step {only_step!r} needs step {step.name!r} complete first "
                                f"({len(missing)} of {len(units)} units missing); run step={step.name} first, or "
                                f"leave out step= to run every step")
            continue
        missing_set = set(missing)
        mine = missing if task is None else [u for j, u in enumerate(units) if j % n_tasks == task and u in missing_set]
        if mine:
            step.prepare(ctx)
            try:
                run_units(stage, ctx, i, mine, workers, progress)
            except RedoUnits as gone:  # a file an earlier step's finished unit wrote is missing (removed by hand?)
                if redo_left <= 0:
                    raise
                forget_units(gone, ctx, log)
                return run_stage(stage, ctx, workers=workers, task=task, n_tasks=n_tasks, only_step=only_step,
                                 log=log, progress=progress, redo_left=redo_left - 1)
        still = [u for u in units if not unit_done(ctx, step.name, u)]
        if still:
            note = f"step {step.name!r}: {len(still)} of {len(units)} units left to other tasks"
            log(f"[{ctx.name}] {note}")
            return StageResult(ctx.name, complete=False, note=note)
        if only_step is not None:
            break
    if not all(unit_done(ctx, s.name, u) for s in stage.steps for u in s.units(ctx)):
        return StageResult(ctx.name, complete=False, note="steps left")
    try:
        finish_stage(stage, ctx)
    except RedoUnits as damaged:
        if redo_left <= 0:
            raise
        forget_units(damaged, ctx, log)
        return run_stage(stage, ctx, workers=workers, task=task, n_tasks=n_tasks, only_step=only_step, log=log,
                         progress=progress, redo_left=redo_left - 1)
    return StageResult(ctx.name, complete=True)


def forget_units(damaged: RedoUnits, ctx: StageContext, log: Callable[[str], None]) -> None:
    """Remove the markers of the units whose stats files `damaged` names (a unit's work is a pure function of its
    inputs: done again, it writes the same files); `ctx` is the context whose markers say a unit is done (a streamed
    chain's last stage)."""
    log(f"[{ctx.name}] {damaged}; doing {len(damaged.paths)} unit(s) again")
    for path in damaged.paths:
        step, unit = path.parent.name, path.stem
        (path.parent.parent.parent / "markers" / step / f"{unit}.done").unlink(missing_ok=True)
        ctx.marker_path(step, unit).unlink(missing_ok=True)


def finish_stage(stage: Stage, ctx: StageContext) -> dict[str, Any]:
    """Sum the units' stats into the stage's stats.json and write its _SUCCESS marker."""
    total = sum_unit_stats(list((ctx.work_dir / "stats").glob("*/*.json")))
    stats = {"stage": ctx.name, **total.to_dict()}
    stats["extra"] = {**stats["extra"], **stage.extra_stats(ctx)}
    write_json_atomic(ctx.stats_path, stats)
    ctx.success_path.touch()
    return stats


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def link_or_copy(src: Path, dst: Path) -> None:
    """Publish a shard under a second name without doubling the disk it takes (copy across filesystems)."""
    if dst.exists() and os.path.samefile(src, dst):
        return  # already published (a rerun)
    with atomic_path(dst) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    tmp.unlink(missing_ok=True)  # rename(2) onto another link of the same file is a no-op that leaves tmp behind
