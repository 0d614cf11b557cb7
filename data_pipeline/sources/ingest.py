"""The ingest stage: `plan` lists every input into work items (one per output shard), `read` turns each item
into document records plus dropped rows for what could not become a document."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from data_pipeline.atomic import write_text_atomic
from data_pipeline.config_check import config_from_dict
from data_pipeline.records import Document
from data_pipeline.stage import ShardOutput, Stage, StageContext, Step
from data_pipeline.stats import UnitStats
from data_pipeline.sources import tables
from data_pipeline.sources.files import FileRules, Skipped, list_files, read_files

FORMATS = ("auto", "files", "jsonl", "parquet", "hf_disk", "hf_files")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclass(frozen=True)
class IngestKeys:
    """The keys the `ingest` section may hold; their defaults and meaning: configs/pipeline/ingest/default.yaml."""

    enabled: Any = None
    format: Any = None
    source: Any = None
    use_git: Any = None
    max_file_bytes: Any = None
    minified_line_chars: Any = None
    fallback_encoding: Any = None
    vendored_dirs: Any = None
    generated_globs: Any = None
    files_per_shard: Any = None
    shard_bytes: Any = None
    rows_per_shard: Any = None
    records_kind: Any = None
    fields: Any = None
    hf_split: Any = None


class InputError(ValueError):
    """A missing or unusable input, reported before any work starts."""


def input_paths(pipeline_cfg: dict[str, Any]) -> list[Path]:
    raw = pipeline_cfg.get("input")
    if raw in (None, "", "???"):
        raise InputError("no input: pass input=PATH (a directory, git repository, JSONL or Parquet file)")
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    return [Path(os.path.expanduser(str(p))).resolve() for p in items]


def detect_format(path: Path, forced: str = "auto") -> str:
    if forced not in FORMATS:
        raise InputError(f"ingest.format={forced!r} is not one of {FORMATS}")
    if not path.exists():
        raise InputError(f"input path {path} does not exist")
    if forced != "auto":
        return forced
    if path.is_dir():
        return "hf_disk" if tables.is_saved_dataset(path) else "files"
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise InputError(f"input {path}: cannot tell its format from the name; set ingest.format to one of {FORMATS[1:]}")


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
    forced = section.get("format", "auto")
    formats = [detect_format(p, forced) for p in paths]
    return list(zip(paths, formats, source_names(paths, section)))


def plan_items(path: Path, fmt: str, source: str, section: dict[str, Any],
               cache_dir: str | None = None) -> list[dict[str, Any]]:
    """The work items (one per output shard) of one input."""
    shard_bytes = int(section.get("shard_bytes", 64 << 20))
    base = {"format": fmt, "path": str(path), "source": source}
    if fmt == "files":
        rules = FileRules.from_config(section)
        files_per_shard = int(section.get("files_per_shard", 1000))
        items, group, nbytes = [], [], 0
        for rel in list_files(path, rules):
            try:
                size = os.lstat(path / rel).st_size
            except OSError:
                size = 0
            if group and (len(group) >= files_per_shard or nbytes + size > shard_bytes):
                items.append({**base, "files": group})
                group, nbytes = [], 0
            group.append(rel)
            nbytes += size
        if group:
            items.append({**base, "files": group})
        return items
    if fmt == "jsonl":
        return [{**base, **r} for r in tables.plan_jsonl(path, shard_bytes)]
    rows = int(section.get("rows_per_shard", 10_000))
    if fmt == "parquet":
        return [{**base, **r} for r in tables.plan_parquet(path, rows)]
    loader = "disk" if fmt == "hf_disk" else "files"
    split = section.get("hf_split")
    return [{**base, "loader": loader, "split": split, "cache_dir": cache_dir, **r}
            for r in tables.plan_hf(path, loader, split, rows, cache_dir)]


def read_item(item: dict[str, Any], section: dict[str, Any]) -> Iterator[Document | Skipped]:
    path, source, fmt = Path(item["path"]), item["source"], item["format"]
    fields = {**tables.DEFAULT_FIELDS, **{k: list(v) for k, v in (section.get("fields") or {}).items()}}
    kind = section.get("records_kind", "text")
    if fmt == "files":
        return read_files(path, item["files"], source, FileRules.from_config(section))
    if fmt == "jsonl":
        return tables.read_jsonl(path, item["start"], item["end"], item["first_line"], source=source, fields=fields,
                                 default_kind=kind)
    if fmt == "parquet":
        return tables.read_parquet(path, item["row_groups"], item["first_row"], source=source, fields=fields,
                                   default_kind=kind)
    return tables.read_hf(path, item["loader"], item["split"], item["start"], item["end"], source=source,
                          fields=fields, default_kind=kind, cache_dir=item.get("cache_dir"))


class PlanStep(Step):
    name = "plan"

    def units(self, ctx: StageContext) -> list[str]:
        return ["plan"]

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        plan_dir = ctx.scratch_dir(self.name)
        plan_dir.mkdir(parents=True, exist_ok=True)
        names: list[str] = []
        per_source: dict[str, int] = {}
        for path, fmt, source in validate_inputs(ctx.pipeline_cfg):
            items = plan_items(path, fmt, source, ctx.cfg, cache_dir=str(ctx.work_dir / "hf_cache"))
            per_source[source] = len(items)
            for item in items:
                name = f"{len(names):05d}"
                write_text_atomic(plan_dir / f"{name}.json", json.dumps(item))
                names.append(name)
        write_text_atomic(plan_dir / "index.json", json.dumps(names))
        return UnitStats(extra={"shards_per_source": per_source})


class ReadStep(Step):
    name = "read"

    def units(self, ctx: StageContext) -> list[str]:
        return json.loads((ctx.scratch_dir("plan") / "index.json").read_text())

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        item = json.loads((ctx.scratch_dir("plan") / f"{unit}.json").read_text())
        with ShardOutput(ctx, unit) as out:
            for got in read_item(item, ctx.cfg):
                if isinstance(got, Skipped):
                    out.drop_record(f"{item['source']}/{got.path}", got.path, item["source"], got.reason, got.nbytes)
                else:
                    out.keep(got, nbytes=got.meta.get("bytes"))
        return out.stats


def build_stage(section: dict[str, Any]) -> Stage:
    return Stage("ingest", [PlanStep(), ReadStep()])
