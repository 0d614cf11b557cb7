"""The whole pipeline: validate everything, run the stages of `stages.STAGES` in order, publish DIR/documents and
DIR/stats.json after the last stage that makes documents, then run the stages that read them (tokenization: DIR/shards
when a tokenizer is given or trained)."""
from __future__ import annotations

import errno
import json
import shutil
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Callable

from data_pipeline.atomic import DamagedFile, LockHeld, hold_lock, read_json, write_json_atomic
from data_pipeline.config import DataError, config_from_dict
from data_pipeline.chain import chain_groups, chain_label, resumable_start, run_chain
from data_pipeline.executor import (StepError, WorkerDied, default_workers, finish_stage, link_or_copy,
                                    redo_damaged, reused_workers, run_stage)
from data_pipeline.sources.ingest import AccountingError, InputError, validate_inputs
from data_pipeline.stage import Stage, StageContext
from data_pipeline.stages import STAGE_ORDER, TURN_ON, build_stage, stage_section
from data_pipeline.stats import check_stats

# Keys that say how to run, not what to produce: they may differ between a run and its resume.
RUN_KEYS = ("stage", "step", "task", "n_tasks", "workers", "progress", "keep_intermediate", "tokenizer", "mixture",
            "holdout", "shards")


# ---- the output lock -------------------------------------------------------------------------------------------------
# The output directory is held by one local refact-pipeline run at a time, or shared by the array tasks of a run.
#
# Two local runs started into one output both exited 0 after doing every unit twice, and the one with
# keep_intermediate=false deleted the documents the other was still reading. A local run now holds an exclusive
# `flock` on DIR/.refact-pipeline.lock for its whole run, and SLURM array tasks (task=i n_tasks=N), which share a
# directory by design, hold it shared: a second local run, or a local run beside array tasks, is refused in one line.
# The kernel drops the lock when the process ends, however it ends, so a rerun after a kill -9 has nothing to clean up.
# As refact_train/run_dir.py does for a training run's directory (data_pipeline may not import refact_train).
LOCK_NAME = ".refact-pipeline.lock"


def lock_output(root: Path, shared: bool, log: Callable[[str], None] = print) -> IO[str] | None:
    """Hold ROOT's lock until the returned file is closed (shared: an array task); None, with a warning, where the
    filesystem has no locks."""
    path = root / LOCK_NAME
    try:
        lock = hold_lock(path, shared)
    except LockHeld as held:
        holder = held.holder or "array tasks (task=i n_tasks=N)"
        raise PipelineError(f"output={root} is in use by another refact-pipeline ({holder}): two runs into one "
                          f"directory redo each other's work and delete what the other reads; wait for it to end or "
                          f"give another output=") from None
    except OSError as err:
        raise PipelineError(f"output={root} is not writable: {err.strerror} ({path}); fix its permissions or give "
                          f"another output=") from None
    if lock is None:
        log(f"[output] {root}: the filesystem has no file locks; a second run started into this directory would not "
            f"be refused")
    return lock


class PipelineError(RuntimeError):
    """A problem of the run itself, said in one line: wrong input, wrong option, an output made with another config
    (found before any work), a full disk, inputs that do not add up. A bad input file is never one: it is dropped."""


def run_problem(exc: BaseException, root: Path) -> PipelineError | None:
    """The one-line PipelineError for an exception that stops the run (a full disk, lost inputs), else None."""
    fix = "free space (or choose another output=) and rerun the same command; finished work is kept"
    for cause in (exc, exc.__cause__):
        if isinstance(cause, (AccountingError, DamagedFile, DataError, StepError, WorkerDied)):
            return PipelineError(str(cause))
        if isinstance(cause, BrokenProcessPool):  # a worker killed outside the executor's own steps (tokenize)
            return PipelineError(f"a worker process was killed (out of memory? see dmesg): {exc}; rerun the same "
                                 f"command (finished units are kept), with fewer workers= if memory is short")
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return PipelineError(f"no space left writing {cause.filename or root}: {fix}")
    if any(f"[Errno {n}]" in str(exc) for n in (errno.ENOSPC, errno.EDQUOT)):  # raised in a worker process
        return PipelineError(f"{exc}: {fix}")
    return None


@dataclass
class PipelineReport:
    complete: bool
    stats: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def build_stages(cfg: dict[str, Any]) -> list[tuple[int, Stage]]:
    """The enabled stages in run order with their position in `STAGE_ORDER`."""
    stages = []
    for index, name in enumerate(STAGE_ORDER):
        try:
            section = stage_section(cfg, name)
            if section is None:
                continue
            stages.append((index, build_stage(name, section)))
        except Exception as exc:  # whatever a stage's config check raises, it stops the run before any work
            raise PipelineError(f"config section {name!r}: {type(exc).__name__}: {exc}") from exc
    return stages


@dataclass(frozen=True)
class PipelineOptions:
    """The top-level keys of configs/pipeline.yaml, typed; the stage sections are checked by their stages. Read raw,
    progress=no (a truthy string) showed the bars, and +worker=4 or +keep_intermediates=false was ignored."""

    input: Any = None  # a path or a list of them (a number is a folder's name): validate_inputs checks them
    output: Any = None
    stage: str = "all"
    step: str | None = None
    task: Any = None  # checked by counts(): `${oc.env:...}` gives digits as a string
    n_tasks: Any = None
    workers: Any = None
    progress: bool = True
    keep_intermediate: bool = True
    tokenizer: dict | None = None  # tokenizer=null: no tokenization
    mixture: dict | None = None
    holdout: dict | None = None
    shards: dict | None = None


def options(cfg: dict[str, Any]) -> PipelineOptions:
    try:
        return config_from_dict(PipelineOptions, {k: v for k, v in cfg.items() if k not in STAGE_ORDER}, "config")
    except ValueError as exc:
        raise PipelineError(f"{exc} (configs/pipeline.yaml; set a value with key=value)") from None


def counts(cfg: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    """(workers, task, n_tasks), each a whole number or None; `${oc.env:...}` gives them as strings of digits."""
    out = []
    for key, least in (("workers", 1), ("task", 0), ("n_tasks", 1)):
        value = cfg.get(key)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise PipelineError(f"{key}={value!r}: expected an integer >= {least}"
                                + (" (or null: every CPU this process may use)" if key == "workers" else ""))
        out.append(value)
    return out[0], out[1], out[2]


def check_options(cfg: dict[str, Any], stage_names: list[str]) -> None:
    _, task, n_tasks = counts(cfg)
    stage = cfg.get("stage", "all")
    if stage in TURN_ON and stage not in stage_names:
        raise PipelineError(TURN_ON[stage])
    allowed = ["all", *stage_names]
    if stage not in allowed:
        raise PipelineError(f"stage={stage!r} is not one of {allowed}")
    if cfg.get("step") is not None and stage == "all":
        raise PipelineError("step=NAME needs stage=NAME (the stage the step belongs to)")
    if (task is None) != (n_tasks is None):
        raise PipelineError("give task=i and n_tasks=N together (SLURM array task i of N)")
    if task is not None and not task < n_tasks:
        raise PipelineError(f"task={task} must be within [0, n_tasks={n_tasks})")


def content_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """What the output depends on: not how it is run, nor where it is (`output=o` then `output=/abs/o` or `o/`, or the
    directory moved, was refused as another config); input paths as absolute paths (`input=in`, then `/abs/in`)."""
    out = {k: v for k, v in cfg.items() if k not in RUN_KEYS and k != "output"}
    if "input" in out:
        paths = out["input"] if isinstance(out["input"], list) else [out["input"]]
        paths = [str(Path(str(p)).expanduser().resolve()) for p in paths]
        out["input"] = paths if isinstance(out["input"], list) else paths[0]
    return out


def check_same_config(root: Path, cfg: dict[str, Any]) -> None:
    """An output directory is resumed only with the config that made it: otherwise shards would mix two configs."""
    snapshot = root / "pipeline_config.json"
    wanted = json.loads(json.dumps(content_config(cfg), sort_keys=True, default=str))
    if snapshot.exists():
        try:
            before = json.loads(snapshot.read_text())
        except (ValueError, OSError) as exc:
            before = exc
        if not isinstance(before, dict):
            raise PipelineError(f"{snapshot} is not the config refact-pipeline wrote there (truncated or edited: "
                                f"{before}); restore it, or write to a new output= directory") from None
        before = content_config(before)
        if before != wanted:
            keys = sorted(k for k in set(before) | set(wanted) if before.get(k) != wanted.get(k))
            raise PipelineError(f"{root} was made with a different config (differs in: {', '.join(keys)}); "
                                f"resume it with the same settings, or write to a new output= directory")
    else:
        write_json_atomic(snapshot, wanted)


def prepare(cfg: dict[str, Any], locks: ExitStack | None = None,
            log: Callable[[str], None] = print) -> tuple[Path, list[tuple[int, Stage]]]:
    """Everything that can be checked before any work; with `locks`, the output's lock is taken into it (held until
    the stack closes) before the config snapshot is read or written."""
    if cfg.get("output") in (None, "", "???"):
        raise PipelineError("no output: pass output=DIR")
    options(cfg)
    try:
        validate_inputs(cfg)
    except InputError as exc:
        raise PipelineError(str(exc)) from exc
    stages = build_stages(cfg)
    check_options(cfg, [s.name for _, s in stages] + fused_labels(stages))
    root = Path(str(cfg["output"])).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise PipelineError(f"output={cfg['output']} is a file, not a directory: choose a directory for the results")
    root.mkdir(parents=True, exist_ok=True)
    if locks is not None:
        lock = lock_output(root, shared=counts(cfg)[1] is not None, log=log)
        if lock is not None:
            locks.enter_context(lock)
    check_same_config(root, cfg)
    return root, stages


def run_pipeline(cfg: dict[str, Any], log: Callable[[str], None] = print) -> PipelineReport:
    with ExitStack() as locks, reused_workers():
        return _run(cfg, log, locks)


def _run(cfg: dict[str, Any], log: Callable[[str], None], locks: ExitStack) -> PipelineReport:
    root, stages = prepare(cfg, locks, log)
    opts = options(cfg)
    selected = opts.stage
    workers, task, n_tasks = counts(cfg)
    workers = workers or default_workers()
    run = dict(workers=workers, task=task, n_tasks=n_tasks, only_step=opts.step, log=log, progress=opts.progress)
    report = PipelineReport(complete=False)
    document_stages = [(i, s) for i, s in stages if s.makes_documents]
    inputs: tuple[Path, ...] = ()
    previous: str | None = None
    published = False
    # consecutive filter stages run as one streamed pass (data_pipeline/chain.py), unless one stage is asked for
    groups = chain_groups(stages, fuse=selected == "all" or selected in fused_labels(stages))
    for k, group in enumerate(groups):
        stage = group[-1][1]
        label = chain_label([s.name for _, s in group])
        if not stage.makes_documents and not published:
            inputs = tuple(publish_documents(root, list(inputs)))
            report.stats = write_pipeline_stats(root, document_stages, cfg, log)
            published = True
        members = [(s, StageContext(s.name, i, root, inputs, stage_section(cfg, s.name) or {}, cfg)) for i, s in group]
        ctx = members[-1][1]
        if selected in ("all", label):
            if previous is not None and not _complete(root, stages, previous):
                raise PipelineError(f"stage {label!r} needs stage {previous!r} complete first; run stage={previous}")
            if (stage.makes_documents and k + 1 < len(groups) and not _complete(root, stages, groups[k + 1][-1][1].name)
                    and redo_damaged(ctx, log, under=ctx.documents_dir)):
                ctx.success_path.unlink(missing_ok=True)  # a document the next stage reads was damaged: redone first
            start = resumable_start(members)
            if start:  # leading stages run alone earlier: their documents are the chain's input
                inputs = tuple(members[start - 1][0].output_shards(members[start - 1][1]))
                _check_input_on_disk(root, stages, members[start - 1][0].name, members[start:], log)
                members = [(s, replace(c, input_shards=inputs)) for s, c in members[start:]]
            else:
                _check_input_on_disk(root, stages, previous, members, log)
            try:
                result = (run_chain(members, **run) if len(members) > 1 else run_stage(stage, members[0][1], **run))
            except Exception as exc:
                problem = run_problem(exc, root)
                if problem is None:
                    raise
                raise problem from exc
            if not result.complete:
                report.notes.append(f"{label}: {result.note}")
                return report
            if not opts.keep_intermediate and task is None and stage.makes_documents:
                for name in [previous] + [s.name for _, s in group[:-1]]:
                    remove_intermediate(root, stages, name, ctx)
        elif not all(c.success_path.exists() for _, c in members):
            raise PipelineError(f"stage {selected!r} needs stage {label!r} complete first; run stage={label}")
        if stage.makes_documents:
            inputs = tuple(stage.output_shards(ctx))
        else:
            report.stats.update(stage.pipeline_stats(ctx))
            write_json_atomic(root / "stats.json", report.stats)
        previous = stage.name
        if selected == label:
            break
    last_label = next(chain_label([s.name for _, s in g]) for g in groups if g[-1] == document_stages[-1])
    if not published and selected in ("all", document_stages[-1][1].name, last_label):
        publish_documents(root, list(inputs))
        report.stats = write_pipeline_stats(root, document_stages, cfg, log)
    report.complete = True
    return report


def fused_labels(stages: list[tuple[int, Stage]]) -> list[str]:
    """The `stage=` names of the chains of two or more filter stages (e.g. `license..decontam`)."""
    return [chain_label([s.name for _, s in g]) for g in chain_groups(stages, fuse=True) if len(g) > 1]


def _check_input_on_disk(root: Path, stages: list[tuple[int, Stage]], previous: str | None, members: list,
                         log: Callable[[str], None]) -> None:
    """A stage run alone after a streamed chain: the chain kept only its last stage's documents."""
    stage, ctx = members[0]
    if previous is None or not stage.makes_documents or stage.complete(ctx):
        return
    index = _position(stages, previous)
    before = _stage_context(root, ctx.pipeline_cfg, index, previous)
    if (not before.documents_dir.is_dir() and before.success_path.exists()
            and stage_stats(dict(stages)[index], before, log)["kept"]):
        raise PipelineError(f"stage {stage.name!r} reads the documents of stage {previous!r}, which are not on disk "
                            f"({previous!r} ran in one streamed pass with the stages after it, or "
                            f"keep_intermediate=false removed them); run stage=all, or write to a new output=")


def remove_intermediate(root: Path, stages: list[tuple[int, Stage]], previous: str | None, ctx: StageContext) -> None:
    """keep_intermediate=false: once a stage is complete, its scratch files and its input (the previous stage's
    documents) are no longer needed; markers and stats stay, so a rerun still skips both stages. Local runs only:
    array tasks of the same stage may still be reading them."""
    shutil.rmtree(ctx.work_dir / "scratch", ignore_errors=True)
    if previous is not None:
        index = _position(stages, previous)
        shutil.rmtree(root / "stages" / f"{index:02d}_{previous}" / "documents", ignore_errors=True)


def _position(stages: list[tuple[int, Stage]], name: str) -> int:
    for index, stage in stages:
        if stage.name == name:
            return index
    return len(STAGE_ORDER)


def _complete(root: Path, stages: list[tuple[int, Stage]], name: str) -> bool:
    index = _position(stages, name)
    return (root / "stages" / f"{index:02d}_{name}" / "_SUCCESS").exists()


def publish_documents(root: Path, shards: list[Path]) -> list[Path]:
    """DIR/documents/ = the last stage's output shards (hard links: no second copy on disk)."""
    out_dir = root / "documents"
    out_dir.mkdir(parents=True, exist_ok=True)
    published = []
    for shard in shards:
        dst = out_dir / shard.name
        link_or_copy(shard, dst)
        published.append(dst)
    names = {p.name for p in published}
    for stale in out_dir.glob("part-*.parquet"):
        if stale.name not in names:
            stale.unlink()
    return published


def _stage_context(root: Path, cfg: dict[str, Any], index: int, name: str) -> StageContext:
    """The context of a finished stage, enough to read (or sum again) its stats; not to run it (no input shards)."""
    return StageContext(name, index, root, (), stage_section(cfg, name) or {}, cfg)


def stage_stats(stage: Stage, ctx: StageContext, log: Callable[[str], None]) -> dict[str, Any]:
    """A finished stage's stats.json. One that a crash, a cut copy or an edit damaged or lost is derived data: summed
    again from its units' stats (and written again), said in one line; PipelineError when that cannot be done."""
    try:
        return check_stats(read_json(ctx.stats_path, keys=("stage",)), ctx.stats_path)
    except FileNotFoundError:
        problem = f"{ctx.stats_path} is missing"
    except DamagedFile as err:
        problem = str(err)
    try:
        stats = finish_stage(stage, ctx)
    except (OSError, DamagedFile) as err:  # its units' stats damaged too, or its scratch gone (keep_intermediate)
        raise PipelineError(f"{problem}, and its units' stats cannot give it again ({err}); delete {ctx.work_dir} "
                            f"and rerun to redo the stage, or write to a new output=") from None
    log(f"[{ctx.name}] {problem}; summed again from its units' stats")
    return stats


def write_pipeline_stats(root: Path, stages: list[tuple[int, Stage]], cfg: dict[str, Any],
                         log: Callable[[str], None] = print) -> dict[str, Any]:
    per_stage = [stage_stats(stage, _stage_context(root, cfg, index, stage.name), log) for index, stage in stages]
    first, last = per_stage[0], per_stage[-1]
    stats = {
        # per source: inputs seen = kept + dropped, checked by the ingest stage (data_pipeline/sources/ingest.py)
        "sources": first["extra"].get("sources", {}),
        "input": {"documents": first["docs_in"], "bytes": first["bytes_in"]},
        "output": {"documents": last["kept"], "bytes": last["bytes_kept"]},
        "dropped_total": sum(s["dropped_total"] for s in per_stage),
        "stages": per_stage,
    }
    for stage in per_stage:  # the duplicate clusters, where a reader of stats.json looks first
        if "duplicate_clusters" in stage["extra"]:
            stats["duplicate_clusters"] = stage["extra"]["duplicate_clusters"]
    write_json_atomic(root / "stats.json", stats)
    return stats
