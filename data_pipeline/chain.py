"""Consecutive per-document filter stages run as one streamed pass over each input shard (as datatrove chains its
steps): a document is read once, goes through licence, quality, English, topic and decontamination filters in run
order, stops at the first that drops it, and only the survivors of the last are written.

Every stage of the chain keeps what a stage run on its own has, except its documents: its own dropped rows
(`DIR/dropped/<stage>-<unit>.parquet`, tagged with the stage), unit stats, markers, `stats.json` and `_SUCCESS`; its
CPU seconds are the time its filter took (the shared read counts to the first stage, the write to the last). Only the
last stage writes `documents/`: the Parquet copy per stage is gone, and a document dropped early costs the later
filters nothing.

Resume: a unit is done when the last stage's marker exists (the others' markers are written just before it); a unit
killed half-way is redone whole, which writes the same files. The stages are finished (stats.json, _SUCCESS) in
order once every unit is done. Leading stages that are already complete with their documents on disk (run alone with
`stage=NAME`) are not redone: the chain starts after them.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Sequence

import pyarrow as pa

from data_pipeline.atomic import write_json_atomic
from data_pipeline.executor import (StageResult, StepError, finish_stage, forget_units, redo_damaged, run_units,
                                    unit_done, write_marker)
from data_pipeline.records import read_document_batches
from data_pipeline.stage import FilterStep, ShardOutput, Stage, StageContext, Step, shard_units, text_bytes
from data_pipeline.stats import RedoUnits, UnitStats

Member = tuple[Stage, StageContext]


def is_filter_stage(stage: Stage) -> bool:
    """A stage that is one per-document keep/drop decision: it can run fused with its neighbours."""
    return stage.makes_documents and len(stage.steps) == 1 and isinstance(stage.steps[0], FilterStep)


def chain_label(names: Sequence[str]) -> str:
    """How `stage=` names a chain: `license..decontam` (a chain of one is just the stage's name)."""
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


class ChainStep(Step):
    """One unit = one input shard through every member's filter. Runs under the last member's context, so the
    executor writes that member's unit stats and marker; this step writes the other members' first."""

    name = "filter"

    def __init__(self, members: Sequence[Member]):
        self.members = list(members)

    def units(self, ctx: StageContext) -> list[str]:
        return shard_units(ctx)

    def prepare(self, ctx: StageContext) -> None:
        for stage, member_ctx in self.members:
            stage.steps[0].prepare(member_ctx)

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        filters = [(stage.steps[0].built(c.name, c.cfg), c) for stage, c in self.members]
        last = len(filters) - 1
        outs = [ShardOutput(c, unit, documents=(i == last)) for i, (_, c) in enumerate(filters)]
        cpu = [0.0] * len(filters)
        clock = time.process_time
        try:
            started = clock()
            for batch, docs in read_document_batches(ctx.input_shards[int(unit)]):
                survivors, survivor_bytes = [], []
                for row, doc in enumerate(docs):
                    nbytes = text_bytes(doc.text)
                    for i, (keep_or_reason, _) in enumerate(filters):
                        t = clock()
                        try:
                            reason = keep_or_reason(doc)
                        except Exception as exc:  # as FilterStep: one odd document must not kill a day-long run
                            reason = f"error:{type(exc).__name__}"
                        cpu[i] += clock() - t
                        if reason is not None:
                            outs[i].drop(doc, reason, nbytes)
                            break
                        if i == last:
                            survivors.append(row)
                            survivor_bytes.append(nbytes)
                        else:
                            outs[i].stats.add_in(nbytes)
                            outs[i].stats.add_kept(nbytes)
                # the survivors are written as the Arrow rows they were read as: the filters never change a document
                outs[last].keep_table(batch.take(pa.array(survivors, pa.int64())), survivor_bytes)
            cpu[0] += clock() - started - sum(cpu)  # reading and decoding the shard
            t = clock()
            stats = [out.close() for out in outs]
            cpu[last] += clock() - t  # writing the survivors
        except BaseException:
            for out in outs:
                out.abort()
            raise
        for (_, c), unit_stats, seconds in zip(filters, stats, cpu):
            unit_stats.extra["cpu_seconds"] = {self.name: round(seconds, 3)}
            if c.name != ctx.name:  # the last member's are written by the executor
                write_json_atomic(c.unit_stats_path(self.name, unit), unit_stats.to_dict())
                write_marker(c, self.name, unit, [])  # the files of the unit: in the last member's marker
        return stats[last]


def run_chain(members: Sequence[Member], *, workers: int = 1, task: int | None = None,
              n_tasks: int | None = None, only_step: str | None = None, log: Callable[[str], None] = print,
              progress: bool = True, redo_left: int = 3) -> StageResult:
    """Run `members` (consecutive filter stages, each with its context; all read the first one's input shards) as
    one pass; the same local / array-task contract (and `redo_left`) as `executor.run_stage`."""
    members = list(members)
    label = chain_label([c.name for _, c in members])
    if only_step is not None and only_step != ChainStep.name:
        raise StepError(f"stage {label!r} has one step, {ChainStep.name!r}, not {only_step!r}")
    if all(stage.complete(c) for stage, c in members):
        for _, c in members:
            log(f"[{c.name}] complete, skipped")
        return StageResult(label, complete=True, skipped=True)
    last_stage, last_ctx = members[-1]
    fused = Stage(label, [ChainStep(members)])
    ctx = replace(last_ctx, input_shards=members[0][1].input_shards)
    redo_damaged(ctx, log)
    units = fused.steps[0].units(ctx)
    missing = [u for u in units if not unit_done(ctx, ChainStep.name, u)]
    missing_set = set(missing)
    mine = missing if task is None else [u for j, u in enumerate(units) if j % n_tasks == task and u in missing_set]
    if mine:
        log(f"[{label}] one streamed pass: {', '.join(c.name for _, c in members)}")
        fused.steps[0].prepare(ctx)
        run_units(fused, ctx, 0, mine, workers, progress)
    still = [u for u in units if not unit_done(ctx, ChainStep.name, u)]
    if still:
        note = f"step {ChainStep.name!r}: {len(still)} of {len(units)} units left to other tasks"
        log(f"[{label}] {note}")
        return StageResult(label, complete=False, note=note)
    try:
        for stage, c in members:  # in run order: the last stage's _SUCCESS, which says the chain is done, comes last
            finish_stage(stage, c)
    except RedoUnits as damaged:  # a unit of any member: the chain's unit is done again
        if redo_left <= 0:
            raise
        forget_units(damaged, ctx, log)
        return run_chain(members, workers=workers, task=task, n_tasks=n_tasks, only_step=only_step, log=log,
                         progress=progress, redo_left=redo_left - 1)
    return StageResult(label, complete=True)


def resumable_start(members: Sequence[Member]) -> int:
    """Index of the first member the chain has to run: leading members complete with their documents on disk (run
    alone) are inputs, not work. A complete member without documents was fused; the chain redoes it with the rest."""
    start = 0
    while start < len(members) - 1:
        stage, c = members[start]
        if not (stage.complete(c) and c.documents_dir.is_dir()):
            break
        start += 1
    return start


def chain_groups(stages: Sequence[tuple[int, Stage]], fuse: bool) -> list[list[tuple[int, Stage]]]:
    """The enabled stages cut into runs: maximal runs of consecutive filter stages together (when `fuse`), every
    other stage alone."""
    groups: list[list[tuple[int, Stage]]] = []
    for item in stages:
        if fuse and groups and is_filter_stage(item[1]) and is_filter_stage(groups[-1][-1][1]):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups

