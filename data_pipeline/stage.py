"""The stage protocol: how a pipeline stage splits its work into units, writes its shards, stats and markers.

A `Stage` is an ordered list of `Step`s. A step names its units of work (`units(ctx)`, e.g. one per input shard,
one per LSH band) and does one unit at a time (`run(ctx, unit) -> UnitStats`). The executor (`executor.py`) runs
the units of a step in local worker processes, or only the units of SLURM array task `i` of `N` (unit index % N ==
i), with the same code; a step starts only once every unit of the previous step has its completion marker.

Layout of one stage under the pipeline's output directory `DIR`:
```
DIR/stages/<NN>_<stage>/documents/part-<unit>.parquet   documents kept (the next stage's input shards)
DIR/stages/<NN>_<stage>/scratch/<step>/...              free space for intermediate files of a step
DIR/stages/<NN>_<stage>/stats/<step>/<unit>.json        UnitStats of one unit (written before its marker)
DIR/stages/<NN>_<stage>/markers/<step>/<unit>.done      completion marker of one unit: a rerun skips it; the size
                                                        and xxh3 of the data files it wrote (executor.write_marker)
DIR/stages/<NN>_<stage>/stats.json, _SUCCESS            the stage's summed stats and its completion marker
DIR/dropped/<stage>-<unit>.parquet                      every document this unit dropped (DROPPED_SCHEMA)
```
Every file is written under a temporary name and renamed (data_pipeline/atomic.py), and the marker comes last, so a
unit killed half-way is simply redone. A unit's work must be a pure function of its inputs: redoing it gives the
same files.

To add a stage: subclass `Step` (or use `filter_stage` for a per-document keep/drop decision), put the steps in a
`Stage`, write a builder `build_stage(section) -> Stage` and add it to `stages.STAGES`. A step that writes the
stage's documents uses `ShardOutput(ctx, unit)`; other steps write under `ctx.scratch_dir(step)` and may report
numbers through `UnitStats.extra` (summed across units) or the stage's `extra_stats(ctx)`.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_pipeline.atomic import atomic_path
from data_pipeline.records import DICTIONARY_COLUMNS, DOCUMENT_SCHEMA, DROPPED_SCHEMA, Document, read_documents
from data_pipeline.stats import UnitStats

WRITE_BATCH = 512  # rows per Parquet write: bounded memory however large a shard is

# A document filter: None keeps the document, a string is the reason it is dropped.
DocumentFilter = Callable[[Document], "str | None"]


@dataclass(frozen=True)
class StageContext:
    """Everything a unit of work needs; picklable, so worker processes receive it as is."""

    name: str  # stage name, e.g. "license"
    index: int  # position in the pipeline (0 = ingest)
    root: Path  # the pipeline's output directory
    input_shards: tuple[Path, ...]  # the previous stage's document shards, sorted (empty for ingest)
    cfg: dict[str, Any] = field(default_factory=dict)  # this stage's config section, plain containers
    pipeline_cfg: dict[str, Any] = field(default_factory=dict)  # the whole resolved config, plain containers

    @property
    def work_dir(self) -> Path:
        return self.root / "stages" / f"{self.index:02d}_{self.name}"

    @property
    def documents_dir(self) -> Path:
        return self.work_dir / "documents"

    def output_path(self, unit: str) -> Path:
        return self.documents_dir / f"part-{unit}.parquet"

    def dropped_path(self, unit: str) -> Path:
        return self.root / "dropped" / f"{self.name}-{unit}.parquet"

    def scratch_dir(self, step: str) -> Path:
        return self.work_dir / "scratch" / step

    def marker_path(self, step: str, unit: str) -> Path:
        return self.work_dir / "markers" / step / f"{unit}.done"

    def unit_stats_path(self, step: str, unit: str) -> Path:
        return self.work_dir / "stats" / step / f"{unit}.json"

    @property
    def stats_path(self) -> Path:
        return self.work_dir / "stats.json"

    @property
    def success_path(self) -> Path:
        return self.work_dir / "_SUCCESS"


def shard_units(ctx: StageContext) -> list[str]:
    """One unit per input shard, named by its index: output shard i holds what survives of input shard i."""
    return [f"{i:05d}" for i in range(len(ctx.input_shards))]


class Step(ABC):
    """One pass of a stage over its units. Subclasses must be picklable (plain attributes)."""

    name: str = "run"

    @abstractmethod
    def units(self, ctx: StageContext) -> list[str]:
        """Names of the units of work, deterministic given the previous steps' outputs."""

    @abstractmethod
    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        """Do one unit; write outputs atomically; return its counters. Must not write the marker (the executor does)."""

    def prepare(self, ctx: StageContext) -> None:
        """Called once in the executor's process before the units run: load models or indexes here into module
        state, and the forked workers inherit them instead of each loading its own copy."""


class Stage:
    """A named list of steps whose last writer of `ctx.documents_dir` produces the next stage's input."""

    # False: the stage reads the published DIR/documents/ and makes something else (token shards); the pipeline
    # publishes the documents before it and runs it after every stage that makes documents.
    makes_documents = True

    def __init__(self, name: str, steps: Sequence[Step]):
        if not steps:
            raise ValueError(f"stage {name!r} has no steps")
        self.name = name
        self.steps = list(steps)

    def output_shards(self, ctx: StageContext) -> list[Path]:
        return sorted(ctx.documents_dir.glob("part-*.parquet"))

    def extra_stats(self, ctx: StageContext) -> dict[str, Any]:
        """Stage-wide numbers added to stats.json once every step is complete (e.g. duplicate clusters)."""
        return {}

    def complete(self, ctx: StageContext) -> bool:
        """Whether a run may skip the stage: its _SUCCESS marker exists."""
        return ctx.success_path.exists()

    def pipeline_stats(self, ctx: StageContext) -> dict[str, Any]:
        """Keys a stage that makes no documents adds to DIR/stats.json once complete."""
        return {}


class ShardOutput:
    """Writes one unit's kept documents and dropped rows, counting both; `close()` renames the files into place.

    Use as a context manager; on an exception nothing is renamed, so the unit leaves no output and no marker.
    `documents=False`: dropped rows only (a stage inside a streamed chain, whose survivors go on in memory).
    """

    def __init__(self, ctx: StageContext, unit: str, stats: UnitStats | None = None, documents: bool = True):
        self.ctx = ctx
        self.unit = unit
        self.stats = stats if stats is not None else UnitStats()
        self._renames = ExitStack()  # closed on success: renames the files into place
        self._tmp = {"dropped": self._renames.enter_context(atomic_path(ctx.dropped_path(unit)))}
        if documents:
            self._tmp["kept"] = self._renames.enter_context(atomic_path(ctx.output_path(unit)))
        self._schemas = {"kept": DOCUMENT_SCHEMA, "dropped": DROPPED_SCHEMA}
        self._rows: dict[str, list[dict[str, Any]]] = {"kept": [], "dropped": []}
        self._kept_tables: list[pa.Table] = []  # kept rows given as Arrow (keep_table), not yet written
        self._writers: dict[str, pq.ParquetWriter] = {}

    def keep(self, doc: Document, nbytes: int | None = None) -> None:
        n = text_bytes(doc.text) if nbytes is None else nbytes
        self.stats.add_in(n)
        self.stats.add_kept(n)
        self._append("kept", doc.to_row())

    def keep_table(self, table: pa.Table | pa.RecordBatch, nbytes: Sequence[int]) -> None:
        """Keep documents given as Arrow rows of DOCUMENT_SCHEMA (as read from a shard), `nbytes` the UTF-8 size of
        each one's text: written as they are, never turned into Python objects. Written in the same WRITE_BATCH
        row groups as `keep`, so a shard comes out the same either way."""
        for n in nbytes:
            self.stats.add_in(n)
            self.stats.add_kept(n)
        if table.num_rows:
            self._kept_tables.append(pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table)
        while sum(t.num_rows for t in self._kept_tables) >= WRITE_BATCH:
            self._flush_tables(full_only=True)

    def _flush_tables(self, full_only: bool) -> None:
        pending = pa.concat_tables(self._kept_tables)
        self._kept_tables = []
        n_full = pending.num_rows - pending.num_rows % WRITE_BATCH if full_only else pending.num_rows
        for lo in range(0, n_full, WRITE_BATCH):
            self._writer("kept").write_table(pending.slice(lo, WRITE_BATCH))
        if n_full < pending.num_rows:
            self._kept_tables.append(pending.slice(n_full))

    def drop(self, doc: Document, reason: str, nbytes: int | None = None) -> None:
        n = text_bytes(doc.text) if nbytes is None else nbytes
        self.drop_record(doc.id, doc.path, doc.source, reason, n)

    def drop_record(self, doc_id: str, path: str | None, source: str, reason: str, nbytes: int) -> None:
        """Drop something that never became a Document (an unreadable file, a corrupt JSONL line)."""
        self.stats.add_in(nbytes)
        self.stats.add_dropped(reason, nbytes, path or doc_id)
        row = {"id": doc_id, "path": path, "source": source, "stage": self.ctx.name, "reason": reason}
        self._append("dropped", row)

    def _append(self, kind: str, row: dict[str, Any]) -> None:
        rows = self._rows[kind]
        rows.append(row)
        if len(rows) >= WRITE_BATCH:
            self._flush(kind)

    def _writer(self, kind: str) -> pq.ParquetWriter:
        writer = self._writers.get(kind)
        if writer is None:
            dictionary = DICTIONARY_COLUMNS if kind == "kept" else True
            writer = self._writers[kind] = pq.ParquetWriter(str(self._tmp[kind]), self._schemas[kind],
                                                            use_dictionary=dictionary)
        return writer

    def _flush(self, kind: str) -> None:
        rows = self._rows[kind]
        writer = self._writer(kind)
        if kind == "kept" and self._kept_tables:
            if rows:
                raise RuntimeError("ShardOutput: keep() and keep_table() mixed in one shard")
            self._flush_tables(full_only=False)
        if rows:  # column by column: pa.Table.from_pylist of the row dicts takes 8x as long
            schema = self._schemas[kind]
            writer.write_table(pa.table({name: [row.get(name) for row in rows] for name in schema.names}, schema=schema))
        self._rows[kind] = []

    def close(self) -> UnitStats:
        for kind in self._tmp:
            self._flush(kind)  # also creates an empty shard: "no survivors" is a result, not a missing file
            self._writers.pop(kind).close()
        self._renames.close()
        return self.stats

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)
        self._renames.pop_all()  # nothing to rename

    def __enter__(self) -> "ShardOutput":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def filter_rows(ctx: StageContext, unit: str, source: Path,
                reasons: Callable[[pa.RecordBatch, int], Sequence["str | None"]]) -> UnitStats:
    """Keep or drop the rows of one document shard by a decision that needs no `Document` (its id, its row):
    `reasons(batch, first_row)` gives None (keep) or the drop reason of each row of the batch. The kept rows are
    written as the Arrow rows they were read as (exact and near dedup's filters: 3x less CPU than going through
    Python objects)."""
    with ShardOutput(ctx, unit) as out:
        row = 0
        for batch in pq.ParquetFile(str(source)).iter_batches(batch_size=1024):
            why = list(reasons(batch, row))
            nbytes = pc.binary_length(batch.column("text")).to_pylist()  # = text_bytes: shards hold valid UTF-8
            keep = [r is None for r in why]
            if not all(keep):
                ids, paths, sources = (batch.column(c).to_pylist() for c in ("id", "path", "source"))
                for i, reason in enumerate(why):
                    if reason is not None:
                        out.drop_record(ids[i], paths[i], sources[i] or "", reason, nbytes[i])
            out.keep_table(batch.filter(pa.array(keep, pa.bool_())), [n for n, k in zip(nbytes, keep) if k])
            row += batch.num_rows
    return out.stats


def text_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


# Filters built in this process, by (stage, config): built once in the executor, inherited by forked workers.
_BUILT_FILTERS: dict[tuple[str, str], DocumentFilter] = {}


class FilterStep(Step):
    """Per input shard: keep or drop each document with a `DocumentFilter` built from the stage config.

    `build_filter(cfg)` runs once per process (in `prepare`, before the workers fork), so filters may hold
    unpicklable state and load models once. A filter that
    raises drops that document with reason `error:<ExceptionType>` instead of failing the run.
    """

    name = "filter"

    def __init__(self, build_filter: Callable[[dict[str, Any]], DocumentFilter]):
        self.build_filter = build_filter

    def units(self, ctx: StageContext) -> list[str]:
        return shard_units(ctx)

    def built(self, stage_name: str, cfg: dict[str, Any]) -> DocumentFilter:
        """The filter for this config, built once per process (also how a config is checked before any work)."""
        key = (stage_name, json.dumps(cfg, sort_keys=True, default=str))
        if key not in _BUILT_FILTERS:
            _BUILT_FILTERS[key] = self.build_filter(cfg)
        return _BUILT_FILTERS[key]

    def prepare(self, ctx: StageContext) -> None:
        self.built(ctx.name, ctx.cfg)

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        keep_or_reason = self.built(ctx.name, ctx.cfg)
        with ShardOutput(ctx, unit) as out:
            for doc in read_documents(ctx.input_shards[int(unit)]):
                try:
                    reason = keep_or_reason(doc)
                except Exception as exc:  # a filter bug on one odd document must not kill a day-long run
                    reason = f"error:{type(exc).__name__}"
                if reason is None:
                    out.keep(doc)
                else:
                    out.drop(doc, reason)
        return out.stats


def filter_stage(name: str, build_filter: Callable[[dict[str, Any]], DocumentFilter],
                 section: dict[str, Any] | None = None) -> Stage:
    """A one-step stage that applies a document filter to every input shard. With `section` the filter is built
    now (and kept for the workers), so a bad config fails before any work."""
    stage = Stage(name, [FilterStep(build_filter)])
    if section is not None:
        stage.steps[0].built(name, dict(section))
    return stage
