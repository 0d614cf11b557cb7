"""The ingest stage: `plan` lists every input into work items (one per output shard), `read` turns each item
into document records plus dropped rows for what could not become a document.

Nothing is lost: the plan counts the entries of every source (files and unlistable directories, non-blank JSONL
lines, table rows, and one entry for a file that cannot even be opened), the read step counts what it kept and
dropped per source, and the stage fails (AccountingError) unless seen == kept + dropped for every source. A file
that cannot be read, or stops being readable half-way, becomes a dropped entry (`unreadable`, `corrupt:<format>`,
a link reason) and the run goes on.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from data_pipeline.atomic import DamagedFile, read_json, write_text_atomic
from data_pipeline.config import check_at_least, config_from_dict
from data_pipeline.records import Document
from data_pipeline.stage import ShardOutput, Stage, StageContext, Step
from data_pipeline.stats import UnitStats, read_unit_stats, sum_unit_stats
from data_pipeline.sources import confined, tables
from data_pipeline.sources.files import MAX_DEPTH, VCS_DIRS, FileRules, Skipped, read_file, walk
from data_pipeline.sources.languages import classify_name

FORMATS = ("auto", "files", "jsonl", "parquet", "hf_disk", "hf_files")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
# The data files of an `hf_files` folder, by extension (any other file there is `unknown_type`).
TABLE_SUFFIXES = {**{s: "jsonl" for s in JSONL_SUFFIXES}, ".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}


KIND_OF = {"files": "a folder of files", "jsonl": "a JSONL file", "parquet": "a Parquet file",
           "hf_disk": "a single saved Dataset", "hf_files": "a folder of data files"}


@dataclass(frozen=True)
class IngestKeys:
    """The keys the `ingest` section may hold and their types (config_from_dict checks both); their defaults and
    meaning: configs/pipeline/ingest/default.yaml. None: not given; `null` is refused but where it has a meaning."""

    enabled: bool = None
    format: str = None
    source: str | None = None
    use_git: bool = None
    max_file_bytes: int = None
    minified_line_chars: int = None
    fallback_encoding: str | None = None
    vendored_dirs: list = None
    generated_globs: list = None
    files_per_shard: int = None
    shard_bytes: int = None
    rows_per_shard: int = None
    records_kind: str = None
    fields: dict = None
    hf_split: str | None = None

    def __post_init__(self) -> None:
        check_at_least(self, "ingest", max_file_bytes=1, minified_line_chars=1, files_per_shard=1, shard_bytes=1,
                       rows_per_shard=1)


class InputError(ValueError):
    """A missing or unusable input, reported before any work starts."""


class AccountingError(RuntimeError):
    """Some input was neither kept nor dropped: a bug, never a property of the data."""


def input_paths(pipeline_cfg: dict[str, Any]) -> list[Path]:
    raw = pipeline_cfg.get("input")
    if raw in (None, "", "???"):
        raise InputError("no input: pass input=PATH (a directory, git repository, JSONL or Parquet file)")
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    return [Path(os.path.expanduser(str(p))).resolve() for p in items]


def detect_format(path: Path, forced: str = "auto", output: str | None = None) -> str:
    """The format of an input (`forced` unless "auto"); `output`: the run's output directory below it, not looked at."""
    if forced not in FORMATS:
        raise InputError(f"ingest.format={forced!r} is not one of {FORMATS}")
    if not path.exists():
        raise InputError(f"input path {path} does not exist")
    if not (path.is_dir() or path.is_file()):  # planning reads an input twice, and /dev/zero never ends
        raise InputError(f"input {path} is not a regular file or a directory (a FIFO, device or socket is never "
                         f"read); save the data to a file and pass that")
    if forced != "auto":  # a format that cannot read this kind of path: one line now, not an empty run later
        if forced in ("jsonl", "parquet") and path.is_dir():
            raise InputError(f"input {path} is a directory, but ingest.format={forced} reads one file; for a folder "
                             f"of data files set ingest.format=hf_files")
        if forced in ("files", "hf_files", "hf_disk") and not path.is_dir():
            raise InputError(f"input {path} is a file, but ingest.format={forced} reads a directory; pass its "
                             f"folder, or ingest.format=auto for a JSONL or Parquet file")
        if forced == "hf_disk" and not tables.is_saved_dataset(path):
            raise InputError(f"input {path} is no dataset saved with save_to_disk (it has no dataset_dict.json, nor "
                             f"a state.json beside a dataset_info.json); for a folder of data files set "
                             f"ingest.format=hf_files")
        return forced
    if path.is_dir():
        if tables.is_saved_dataset(path):
            return "hf_disk"
        return "hf_files" if is_data_folder(path, output) else "files"
    name = path.name.lower()
    if tables.without_compression(name).endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise InputError(f"input {path}: cannot tell its format from the name; set ingest.format to one of {FORMATS[1:]}")


DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".ndjson", ".csv")  # never source code (`.json` may be)


def is_data_folder(path: Path, output: str | None = None) -> bool:
    """A folder of data files (a dataset downloaded or exported as Parquet, Arrow, JSONL or CSV files), judged by
    names alone: at least one data file, and no file of code or text but a README or `.json` metadata. Read as
    files, each Parquet file would be one `binary` entry; a repository with a few test tables keeps its code read."""
    found, pending = False, [""]
    while pending:
        rel_dir = pending.pop()
        try:
            with confined.open_dir(path, rel_dir) as fd:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in os.scandir(fd)]
        except OSError:
            continue  # the plan's walk reports it
        for name, is_dir in entries:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            lower = tables.without_compression(name).lower()
            if is_dir:
                if name not in VCS_DIRS and rel != output and rel.count("/") < MAX_DEPTH:
                    pending.append(rel)
            elif lower.endswith(DATA_SUFFIXES):
                found = True
            elif classify_name(name) and not (lower.startswith("readme") or lower.endswith(".json")):
                return False
    return found


def source_names(paths: list[Path], section: dict[str, Any]) -> list[str]:
    """One name per input: `ingest.source` when given, else the file/directory name, made unique."""
    given = section.get("source")
    names: list[str] = []
    for i, path in enumerate(paths):
        base = str(given) if given else (path.name.split(".")[0] or f"input{i}")
        name = base if base not in names else f"{base}-{i}"
        names.append(name)
    return names


def validate_inputs(pipeline_cfg: dict[str, Any]) -> list[tuple[Path, str, str]]:
    """(path, format, source) for every input; raises InputError naming the bad one before any work."""
    section = pipeline_cfg.get("ingest", {}) or {}
    try:
        config_from_dict(IngestKeys, section, "ingest")
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    paths = input_paths(pipeline_cfg)
    for i, path in enumerate(paths):  # every record of it would be read twice, under two source names
        for other in paths[:i]:
            if path == other or other in path.parents or path in other.parents:
                inner, outer = (path, other) if other in path.parents else (other, path)
                raise InputError(f"input {path} is given twice; pass it once" if path == other else
                                 f"input {inner} lies inside input {outer}: its files would be read twice; pass one")
    forced = section.get("format", "auto")
    formats = [detect_format(p, forced, output_below(p, pipeline_cfg.get("output"))) for p in paths]
    split = section.get("hf_split")
    dicts = [p for p, fmt in zip(paths, formats) if fmt == "hf_disk" and os.path.lexists(p / "dataset_dict.json")]
    if split is not None and not dicts:  # it would be ignored: a folder of train and test files read whole
        raise InputError(f"ingest.hf_split={split!r} chooses a split of a DatasetDict saved with save_to_disk, and no "
                         f"input is one ({paths[0]} is {KIND_OF[formats[0]]}); remove ingest.hf_split, or pass only "
                         f"that split's files as input")
    for path, fmt in zip(paths, formats):
        if fmt == "hf_disk":
            try:
                tables.dataset_split(path, section.get("hf_split"))
            except tables.SplitNotChosen as exc:
                raise InputError(str(exc)) from exc
            except Exception:
                pass  # an unreadable or corrupt dataset_dict.json: the plan drops the input with its reason
        if fmt in ("parquet", "hf_disk"):
            check_text_column(path, fmt, section)
        if fmt == "jsonl":
            check_json_lines(path)
    return list(zip(paths, formats, source_names(paths, section)))


def check_json_lines(path: Path) -> None:
    """InputError for a JSON array or pretty-printed JSON given as JSONL (alpaca_data.json): every line of it would
    be `corrupt:jsonl`, or the whole array one `corrupt_record`."""
    try:
        with confined.open_binary(path, None) as raw, tables.decompressed(raw, path.name) as f:
            instead = tables.not_json_lines(f)
    except Exception:
        return  # the plan drops an unreadable file or a corrupt archive with its reason
    if instead:
        fix = "jq -c '.[]'" if instead == "a JSON array" else "jq -c ."
        out = path.stem + ("-lines" if path.suffix.lower() == ".jsonl" else "") + ".jsonl"  # never > the input itself
        raise InputError(f"input {path} is {instead}, not JSONL (one JSON object per line); convert it: "
                         f"{fix} {path.name} > {out}")


def check_text_column(path: Path, fmt: str, section: dict[str, Any]) -> None:
    """InputError when no row of a Parquet file or saved dataset can have a text (its text column has a name that
    is no alias, or holds numbers): every row would be `missing_text`, in a run that ends with no document."""
    names = list((section.get("fields") or {}).get("text") or tables.DEFAULT_FIELDS["text"])
    try:
        if fmt == "parquet":
            with confined.open_binary(path, None) as f:
                schema = tables.table_schema(f, "parquet")
        else:
            shards = tables.saved_dataset_shards(path, tables.dataset_split(path, section.get("hf_split")))
            with confined.open_binary(path, shards[0]) as f:
                schema = tables.table_schema(f, "arrow")
    except Exception:
        return  # a file or dataset that cannot be read: the plan drops it with its reason
    problem = tables.text_column_problem(schema, names)
    if problem:
        raise InputError(f"input {path}: no row can have a text: {problem}; name the column that holds it with "
                         f"+ingest.fields.text=[NAME]")


def skipped_item(base: dict[str, Any], entries: list[tuple[str, str]]) -> dict[str, Any]:
    """An item of (path, reason) entries that cannot be read or planned: each one dropped entry."""
    return {**base, "format": "skipped", "entries": [list(e) for e in entries], "inputs": len(entries)}


def table_items(base: dict[str, Any], root: Path, rel: str | None, fmt: str, name: str, section: dict[str, Any],
                first_row: int = 0) -> list[dict[str, Any]]:
    """The items of one table file (`rel` below `root`, or `root` itself); one dropped entry if it cannot be read.
    `name` prefixes the records' locators (`name:row`)."""
    file_base = {**base, "format": fmt, "root": str(root), "rel": rel, "name": name}
    rows = int(section.get("rows_per_shard", 10_000))
    fname = rel or root.name
    try:
        with confined.open_binary(root, rel) as raw, tables.decompressed(raw, fname) as f:
            if fmt == "jsonl":  # a compressed file: one item (a seek in it decompresses all that lies before)
                chunk = int(section.get("shard_bytes", 64 << 20)) if f is raw else 1 << 62
                return [{**file_base, **r} for r in tables.plan_jsonl(f, chunk)]
            if fmt == "parquet":
                return [{**file_base, **r} for r in tables.plan_parquet(f, rows)]
            if fmt == "arrow":
                return [{**file_base, "first_row": first_row, **r} for r in tables.plan_arrow(f, rows)]
            return [{**file_base, **r} for r in tables.plan_csv(f)]
    except MemoryError:
        raise
    except Exception as exc:  # whatever a corrupt file makes a reader raise: that file is dropped, the run goes on
        entry = name if rel is None or name == confined.shown(rel) else f"{name}/{confined.shown(rel)}"
        return [skipped_item(base, [(entry, tables.failure_reason(exc, fmt))])]


def output_below(path: Path, output: Any) -> str | None:
    """The pipeline's output directory relative to the input directory `path` when it lies below it, else None."""
    if not output:
        return None
    out = Path(os.path.expanduser(str(output))).resolve()
    return out.relative_to(path).as_posix() if out != path and path in out.parents else None


def plan_items(path: Path, fmt: str, source: str, section: dict[str, Any],
               output: Any = None) -> list[dict[str, Any]]:
    """The work items (one per output shard) of one input, each with `inputs`: the entries it accounts for.
    `output`: the pipeline's output directory, never read as input."""
    base = {"source": source}
    if fmt == "files":
        listing = walk(path, FileRules.from_config(section), output_below(path, output))
        files_per_shard = int(section.get("files_per_shard", 1000))
        shard_bytes = int(section.get("shard_bytes", 64 << 20))
        groups: list[list[str]] = []
        nbytes = 0
        for rel in listing.files:
            size = listing.sizes.get(rel, 0)
            if not groups or len(groups[-1]) >= files_per_shard or nbytes + size > shard_bytes:
                groups.append([])
                nbytes = 0
            groups[-1].append(rel)
            nbytes += size
        items = [{**base, "format": "files", "root": str(path), "files": g, "inputs": len(g)} for g in groups]
        return items + ([skipped_item(base, [(s.path, s.reason) for s in listing.skipped])] if listing.skipped else [])
    if fmt in ("jsonl", "parquet"):
        return table_items(base, path, None, fmt, path.name, section)
    if fmt == "hf_disk":
        try:
            shards = tables.saved_dataset_shards(path, tables.dataset_split(path, section.get("hf_split")))
        except MemoryError:
            raise
        except Exception as exc:
            return [skipped_item(base, [(path.name, tables.failure_reason(exc, "arrow"))])]
        items, first_row = [], 0
        for rel in shards:
            planned = table_items(base, path, rel, "arrow", path.name, section, first_row)
            first_row += sum(i["inputs"] for i in planned if i["format"] == "arrow")
            items += planned
        return items
    listing = walk(path, FileRules(use_git=False), output_below(path, output))  # hf_files: a folder of data files
    items = [skipped_item(base, [(s.path, s.reason) for s in listing.skipped])] if listing.skipped else []
    for rel in listing.files:
        name = tables.without_compression(rel)
        table = TABLE_SUFFIXES.get(os.path.splitext(name)[1].lower())
        if name != rel and table not in ("jsonl", "csv"):  # Parquet and Arrow compress inside themselves
            table = None
        if table is None:
            items.append(skipped_item(base, [(confined.shown(rel), "unknown_type")]))
        else:
            items += table_items(base, path, rel, table, confined.shown(rel), section)
    return items


def read_records(item: dict[str, Any], section: dict[str, Any]) -> Iterator[Document | Skipped]:
    """The records of one table item (its file opened again, without following links)."""
    fields = {**tables.DEFAULT_FIELDS, **{k: list(v) for k, v in (section.get("fields") or {}).items()}}
    common = {"name": item["name"], "source": item["source"], "fields": fields,
              "default_kind": section.get("records_kind", "text")}
    fmt = item["format"]
    root = Path(item["root"])
    with confined.open_binary(root, item["rel"]) as raw, tables.decompressed(raw, item["rel"] or root.name) as f:
        if fmt == "jsonl":
            yield from tables.read_jsonl(f, item["start"], item["end"], item["first_line"], **common)
        elif fmt == "parquet":
            yield from tables.read_parquet(f, item["row_groups"], item["first_row"], **common)
        elif fmt == "arrow":
            yield from tables.read_arrow(f, item["start"], item["end"], item["first_row"], **common)
        else:
            yield from tables.read_csv(f, **common)


def read_item(item: dict[str, Any], section: dict[str, Any]) -> Iterator[Document | Skipped]:
    """Every entry of an item as a Document or a Skipped, `item["inputs"]` entries in all. A reader that fails
    half-way yields one Skipped for the entries it did not get to (`count` of them) instead of raising; a file that
    changed since the plan gives no more entries than the plan counted, and one Skipped for any it lacks."""
    fmt = item["format"]
    if fmt == "skipped":
        for rel, reason in item["entries"]:
            yield Skipped(rel, reason)
        return
    if fmt == "files":
        root, rules = Path(item["root"]), FileRules.from_config(section)
        for rel in item["files"]:
            try:
                yield read_file(root, rel, item["source"], rules)
            except MemoryError:
                raise
            except Exception as exc:  # a bug met on one odd file must not stop a day-long run
                yield Skipped(rel, f"error:{type(exc).__name__}")
        return
    done, reason = 0, "changed_since_plan"  # a file edited or still being written since the plan counted it
    try:
        for got in read_records(item, section):
            entries = got.count if isinstance(got, Skipped) else 1
            if done + entries > item["inputs"]:
                break  # more than the plan saw: the plan's count stands, the rest is that of a newer file
            done += entries
            yield got
    except MemoryError:
        raise
    except Exception as exc:
        reason = tables.failure_reason(exc, fmt)
    if item["inputs"] > done:
        yield Skipped(f"{item['name']}:{span(item)}", reason, count=item["inputs"] - done)


def span(item: dict[str, Any]) -> str:
    """Where in its file an item lies, for the dropped entry of a part that could not be read."""
    if item["format"] == "jsonl":
        return f"lines {item['first_line']}+"
    if item["format"] == "parquet":
        return f"rows {item['first_row']}-{item['first_row'] + item['inputs'] - 1}"
    if item["format"] == "arrow":
        return f"rows {item['first_row'] + item['start']}-{item['first_row'] + item['end'] - 1}"
    return "rows"


class PlanStep(Step):
    name = "plan"

    def units(self, ctx: StageContext) -> list[str]:
        return ["plan"]

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        plan_dir = ctx.scratch_dir(self.name)
        plan_dir.mkdir(parents=True, exist_ok=True)
        names: list[str] = []
        per_source: dict[str, int] = {}
        seen: dict[str, int] = {}
        for path, fmt, source in validate_inputs(ctx.pipeline_cfg):
            items = plan_items(path, fmt, source, ctx.cfg, ctx.pipeline_cfg.get("output"))
            per_source[source] = len(items)
            seen[source] = sum(item["inputs"] for item in items)
            for item in items:
                name = f"{len(names):05d}"
                write_text_atomic(plan_dir / f"{name}.json", json.dumps(item))
                names.append(name)
        write_text_atomic(plan_dir / "index.json", json.dumps(names))
        return UnitStats(extra={"shards_per_source": per_source, "inputs_seen": seen})


class ReadStep(Step):
    name = "read"

    def units(self, ctx: StageContext) -> list[str]:
        return self.planned(ctx, "index.json", list)

    @staticmethod
    def planned(ctx: StageContext, name: str, shape: type) -> Any:
        """A file the plan step wrote; missing or damaged (a crash, a cut copy), the plan (of the same inputs: the
        same plan) is made again."""
        path = ctx.scratch_dir(PlanStep.name) / name
        try:
            return read_json(path, shape)
        except (FileNotFoundError, DamagedFile) as err:
            print(f"[ingest] {err}; planning again", file=sys.stderr)
        PlanStep().run(ctx, "plan")
        return read_json(path, shape)

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        item = self.planned(ctx, f"{unit}.json", dict)
        source = item["source"]
        counts = {"kept": 0, "dropped": 0}
        with ShardOutput(ctx, unit) as out:
            for got in read_item(item, ctx.cfg):
                if isinstance(got, Skipped):
                    path = confined.shown(got.path)
                    out.drop_record(f"{source}/{path}", path, source, got.reason, got.nbytes)
                    counts["dropped"] += got.count
                else:
                    out.keep(got, nbytes=got.meta.get("bytes"))
                    counts["kept"] += 1
        out.stats.extra["sources"] = {source: counts}
        return out.stats


class IngestStage(Stage):
    def extra_stats(self, ctx: StageContext) -> dict[str, Any]:
        """Per source: inputs seen by the plan, kept and dropped by the reads; AccountingError unless they add up."""
        seen = read_unit_stats(ctx.unit_stats_path("plan", "plan")).extra["inputs_seen"]
        read = sum_unit_stats(list((ctx.work_dir / "stats" / "read").glob("*.json"))).extra.get("sources", {})
        sources = {}
        for source in sorted(set(seen) | set(read)):
            kept, dropped = read.get(source, {}).get("kept", 0), read.get(source, {}).get("dropped", 0)
            sources[source] = {"seen": seen.get(source, 0), "kept": kept, "dropped": dropped}
            if seen.get(source, 0) != kept + dropped:
                raise AccountingError(
                    f"{ctx.work_dir}: source {source!r}: {seen.get(source, 0)} inputs seen but {kept} kept + "
                    f"{dropped} dropped; some input was lost: report this bug with {ctx.work_dir}/scratch/plan")
        return {"sources": sources}


def build_stage(section: dict[str, Any]) -> Stage:
    return IngestStage("ingest", [PlanStep(), ReadStep()])
