"""Tokenization, the pipeline's last stage: a tokenizer (given, or trained on the kept documents), then the
documents tokenized, held out, mixed and packed into DIR/shards/ (the format: data_pipeline/shards.py).

`build_shards` runs in two passes:
1. tokenize: worker processes (fork) turn units of the input Parquet shards (runs of row groups) into scratch token
   files plus per-document metadata (token count, group, the hashes that decide holdout and mixture copies);
2. pack: the main process picks the held-out documents (valid split, also written as document records under
   `DIR/heldout/`), computes the mixture weights from the train token counts, and writes every train document
   `copies` times, in a seeded shuffled order, then the valid documents, then the manifest (last: it marks the
   build complete). Output goes to temporary directories renamed at the end, so a killed build leaves no
   half-written `DIR/shards/`; a rerun with the same inputs and settings reuses the units pass 1 finished.

As a stage (`build_stage`) it reads the published DIR/documents/ and records a finished build in DIR/tokenize.json
with the settings it used: the tokenizer, mixture, holdout and shards settings may change between runs of the same
output directory, and a change makes the stage start over.
"""
from __future__ import annotations

import functools
import json
import multiprocessing
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from data_pipeline.atomic import (DamagedFile, file_record, read_json, read_json_or_none, record_problem,
                                  write_json_atomic, write_text_atomic)
from data_pipeline.config import DataError, config_from_dict
from data_pipeline.mixing import HoldoutConfig, MixtureConfig, compute_weights, holdout_score, uniform_hash
from data_pipeline.records import Document, documents_of, read_documents, write_documents
from data_pipeline.shards import Manifest, ManifestError, ShardConfig, read_manifest, write_shards
from data_pipeline.stage import Stage, StageContext, Step
from data_pipeline.stats import UnitStats
from data_pipeline.tokenizer import RefactTokenizer, TokenizerKeys, load_tokenizer, train_bpe

UNIT_ROWS = 50_000  # documents per tokenize unit: row groups are merged up to this many rows
ENCODE_BATCH = 256


@dataclass(frozen=True)
class _Unit:
    index: int
    path: str
    row_groups: tuple[int, ...]


@dataclass(frozen=True)
class _Job:
    unit: _Unit
    tokenizer_file: str
    work_dir: str
    by: str
    mixture_seed: int
    holdout: HoldoutConfig


def _units(document_files: Sequence[str | Path]) -> list[_Unit]:
    seen: dict[Path, str | Path] = {}
    for path in document_files:  # the same file twice would double its documents behind the mixture's back
        if Path(path).resolve() in seen:
            raise ValueError(f"build_shards: input document shard {path} is also given as {seen[Path(path).resolve()]}"
                             f"; list each file once (mixture.weights repeats documents)")
        seen[Path(path).resolve()] = path
    units: list[_Unit] = []
    for path in document_files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"build_shards: input document shard {path} does not exist")
        meta = pq.ParquetFile(str(path)).metadata
        run: list[int] = []
        rows = 0
        for rg in range(meta.num_row_groups):
            run.append(rg)
            rows += meta.row_group(rg).num_rows
            if rows >= UNIT_ROWS:
                units.append(_Unit(len(units), str(path), tuple(run)))
                run, rows = [], 0
        if run or meta.num_row_groups == 0:
            units.append(_Unit(len(units), str(path), tuple(run)))
    return units


def _read_unit(unit: _Unit) -> Iterable[Document]:
    if not unit.row_groups:
        return
    pf = pq.ParquetFile(unit.path)
    for batch in pf.iter_batches(batch_size=ENCODE_BATCH, row_groups=list(unit.row_groups)):
        yield from documents_of(batch)


_tokenizer = functools.cache(load_tokenizer)  # one per process and file: the forked workers reuse it


def _log(message: str) -> None:
    print(message, file=sys.stderr)  # sys.stderr of now: a caller may have redirected it


def _tokenize_unit(job: _Job) -> dict[str, Any]:
    """Pass 1 for one unit: `<work>/unit-NNNNN.bin` (tokens, no EOT), `.npz` (per-document metadata) and, last,
    `.json` (its completion marker: a rerun after an interruption skips the unit)."""
    base = Path(job.work_dir) / f"unit-{job.unit.index:05d}"
    marker = Path(f"{base}.json")
    done = read_json_or_none(marker, _log, "tokenizing the unit again", keys=("index", "groups", "documents", "files"))
    if done is not None:  # its scratch as written? (a power cut can leave a renamed file empty or short)
        files = done["files"] if isinstance(done["files"], dict) else {"bin": None, "npz": None}
        problem = next(filter(None, (record_problem(Path(f"{base}.{ext}"), files.get(ext)) for ext in ("bin", "npz"))),
                       None)
        if problem is None:
            return done
        _log(f"{problem}; tokenizing the unit again")
    tok = _tokenizer(job.tokenizer_file)
    groups: dict[str, int] = {}
    lengths, group_ids, mix_u, hold_u, eligible = [], [], [], [], []
    batch: list[Document] = []

    def flush(f) -> None:
        for doc, ids in zip(batch, tok.encode_batch([d.text for d in batch])):
            f.write(np.asarray(ids, dtype=tok.token_dtype).tobytes())
            lengths.append(len(ids))
            key = doc.kind if job.by == "kind" else doc.source
            group_ids.append(groups.setdefault(key, len(groups)))
            mix_u.append(uniform_hash(job.mixture_seed, doc.id, "mixture"))
            hold_u.append(holdout_score(doc.id, job.holdout))
            eligible.append(doc.kind in job.holdout.kinds)
        batch.clear()

    with open(f"{base}.bin", "wb") as f:
        for doc in _read_unit(job.unit):
            batch.append(doc)
            if len(batch) >= ENCODE_BATCH:
                flush(f)
        flush(f)
    np.savez(f"{base}.npz", lengths=np.asarray(lengths, dtype=np.int64), group=np.asarray(group_ids, dtype=np.int32),
             mix_u=np.asarray(mix_u, dtype=np.float64), hold_u=np.asarray(hold_u, dtype=np.float64),
             eligible=np.asarray(eligible, dtype=bool))
    result = {"index": job.unit.index, "groups": list(groups), "documents": len(lengths),
              "files": {ext: file_record(f"{base}.{ext}") for ext in ("bin", "npz")}}
    write_text_atomic(marker, json.dumps(result))  # last: the unit's completion marker
    return result


def _run_pass1(jobs: list[_Job], workers: int, progress: bool) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    bar = tqdm(total=len(jobs), desc="tokenize", unit="unit", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(_tokenize_unit(job))
            bar.update()
    else:
        # fork, as the pipeline executor does (no re-import of a caller's __main__); an executor, not a Pool, which
        # waited for ever for the unit of a worker the OOM killer took (pipeline.run_problem names BrokenProcessPool).
        # The processes are the parallelism: their tokenizers run single-threaded (also no HF fork warning).
        previous = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("fork"))
        try:
            for future in as_completed([pool.submit(_tokenize_unit, job) for job in jobs]):
                results.append(future.result())
                bar.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if previous is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = previous
    bar.close()
    return sorted(results, key=lambda r: r["index"])


@dataclass
class _UnitData:
    tokens: np.ndarray  # memmap of the unit's tokens
    starts: np.ndarray  # document start offsets (length documents + 1)
    group: np.ndarray  # global group index per document
    mix_u: np.ndarray  # uniform hash that decides a fractional mixture copy
    hold_u: np.ndarray  # uniform hash that decides holdout
    eligible: np.ndarray  # bool: the document's kind may be held out
    heldout: np.ndarray  # bool per document, set by _select_heldout


def _load_units(work: Path, results: list[dict[str, Any]], dtype: Any,
                names: list[str]) -> list[_UnitData]:
    data = []
    for r in results:
        base = work / f"unit-{r['index']:05d}"
        meta = np.load(f"{base}.npz")
        remap = np.asarray([names.index(g) for g in r["groups"]] or [0], dtype=np.int32)
        lengths = meta["lengths"]
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens = (np.memmap(f"{base}.bin", dtype=dtype, mode="r", shape=(int(starts[-1]),))
                  if starts[-1] > 0 else np.empty(0, dtype=dtype))
        data.append(_UnitData(tokens, starts, remap[meta["group"]], meta["mix_u"], meta["hold_u"], meta["eligible"],
                              np.zeros(len(lengths), dtype=bool)))
    return data


def _select_heldout(units: list[_UnitData], cfg: HoldoutConfig) -> None:
    """Mark held-out documents: score below the fraction, kind eligible, then the smallest scores up to the cap."""
    cands = [(float(u.hold_u[i]), k, i) for k, u in enumerate(units)
             for i in np.flatnonzero((u.hold_u < cfg.fraction) & u.eligible).tolist()]
    cands.sort()
    if cfg.max_documents is not None:
        cands = cands[:cfg.max_documents]
    for _, k, i in cands:
        units[k].heldout[i] = True


def _write_heldout_records(units: list[_Unit], data: list[_UnitData], out: Path) -> int:
    written = 0
    for unit, d in zip(units, data):
        if not d.heldout.any():
            continue
        keep = [doc for doc, held in zip(_read_unit(unit), d.heldout) if held]
        written += write_documents(out / f"heldout-{unit.index:05d}.parquet", keep)
    return written


def _prepare_work_dir(work: Path, tokenizer: Any, units: list[_Unit], mixture: MixtureConfig,
                      holdout: HoldoutConfig) -> None:
    """Keep the scratch of an interrupted build when it was made from the same inputs and settings, else start over."""
    settings = {"tokenizer": tokenizer.sha256, "by": mixture.by, "mixture_seed": mixture.seed,
                "holdout": {**asdict(holdout), "kinds": list(holdout.kinds)},
                "units": [[u.path, list(u.row_groups), Path(u.path).stat().st_size, Path(u.path).stat().st_mtime_ns]
                          for u in units]}
    marker = work / "settings.json"
    if read_json_or_none(marker, _log, "tokenizing every unit again") == settings:
        return
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tokenizer.save(work / "tokenizer")
    write_text_atomic(marker, json.dumps(settings))


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def _train_order(data: list[_UnitData], w: np.ndarray, mixture: MixtureConfig,
                 shuffle: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit, document) of every train copy in stream order, and the train tokens per group after mixing."""
    unit_of, doc_of = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    after = np.zeros(len(w), dtype=np.int64)
    for k, d in enumerate(data):
        wd = w[d.group]
        n_copies = np.floor(wd).astype(np.int64) + (d.mix_u < wd - np.floor(wd))
        n_copies[d.heldout] = 0
        np.add.at(after, d.group, n_copies * (np.diff(d.starts) + 1))
        docs = np.repeat(np.arange(len(d.mix_u)), n_copies)
        unit_of.append(np.full(len(docs), k, dtype=np.int64))
        doc_of.append(docs)
    units, docs = np.concatenate(unit_of), np.concatenate(doc_of)
    if shuffle:
        order = np.random.default_rng([mixture.seed, 0x5A4D]).permutation(len(docs))
        units, docs = units[order], docs[order]
    return units, docs, after


def build_shards(document_files: Sequence[str | Path], out_dir: str | Path, tokenizer: Any,
                 mixture_cfg: MixtureConfig | None = None, holdout_cfg: HoldoutConfig | None = None,
                 workers: int = 1, shard_cfg: ShardConfig | None = None, progress: bool = True) -> Manifest:
    """Tokenize and pack document shards into `out_dir/shards/` (+ held-out records in `out_dir/heldout/`).

    `out_dir` is the pipeline's output directory. Returns the written, validated manifest.
    """
    mixture = mixture_cfg or MixtureConfig()
    holdout = holdout_cfg or HoldoutConfig()
    shard_cfg = shard_cfg or ShardConfig()
    out = Path(out_dir)
    shards_tmp, heldout_tmp, work = out / "shards.tmp", out / "heldout.tmp", out / "shards.work"
    for d in (shards_tmp, heldout_tmp):
        shutil.rmtree(d, ignore_errors=True)
    units = _units(document_files)
    _prepare_work_dir(work, tokenizer, units, mixture, holdout)
    jobs = [_Job(u, str(work / "tokenizer" / "tokenizer.json"), str(work), mixture.by, mixture.seed, holdout)
            for u in units]
    results = _run_pass1(jobs, workers, progress)
    names = sorted({g for r in results for g in r["groups"]})
    data = _load_units(work, results, np.dtype(tokenizer.token_dtype), names)
    _select_heldout(data, holdout)

    # Mixture: weights from the train tokens per group (a document's tokens + its EOT), then copies per document.
    before = np.zeros(len(names), dtype=np.int64)
    for d in data:
        np.add.at(before, d.group[~d.heldout], np.diff(d.starts)[~d.heldout] + 1)
    weights, missing = compute_weights({g: int(t) for g, t in zip(names, before)}, mixture)
    w = np.asarray([weights[g] for g in names] or [0.0])
    unit_of, doc_of, after = _train_order(data, w, mixture, shard_cfg.shuffle)

    def train_docs() -> Iterator[np.ndarray]:
        for k, i in zip(unit_of.tolist(), doc_of.tolist()):
            yield data[k].tokens[data[k].starts[i]:data[k].starts[i + 1]]

    def valid_docs() -> Iterator[np.ndarray]:
        for d in data:
            for i in np.flatnonzero(d.heldout).tolist():
                yield d.tokens[d.starts[i]:d.starts[i + 1]]

    mixture_record = {
        "weights": {g: weights[g] for g in names}, "by": mixture.by,
        "tokens_before": {g: int(t) for g, t in zip(names, before)},
        "tokens_after": {g: int(t) for g, t in zip(names, after)},
        "requested": {"weights": dict(mixture.weights), "shares": dict(mixture.shares),
                      "default_weight": mixture.default_weight},
        "missing_groups": missing, "seed": mixture.seed}
    n_heldout = _write_heldout_records(units, data, heldout_tmp)
    extra = {"inputs": [_relative(p, out) for p in document_files], "documents_in": int(sum(len(d.mix_u) for d in data)),
             "holdout": {**asdict(holdout), "kinds": list(holdout.kinds), "documents": n_heldout},
             "shards": asdict(shard_cfg)}
    n_valid = int(sum(d.heldout.sum() for d in data))
    write_shards(shards_tmp, {"train": train_docs(), "valid": valid_docs()}, tokenizer, mixture=mixture_record,
                 extra=extra, max_tokens_per_shard=shard_cfg.max_tokens_per_shard, progress=progress,
                 totals={"train": len(doc_of), "valid": n_valid})
    del data  # release the memory maps before the scratch directory goes
    _replace_dir(shards_tmp, out / "shards")
    if heldout_tmp.exists():
        _replace_dir(heldout_tmp, out / "heldout")
    elif (out / "heldout").exists():
        shutil.rmtree(out / "heldout")
    shutil.rmtree(work, ignore_errors=True)
    return read_manifest(out, tokenizer_sha256=tokenizer.sha256)


def _relative(path: str | Path, out: Path) -> str:
    """An input's path as the manifest records it: relative to the output directory, so a published dataset
    carries no path of the machine that built it (an input outside it is named by its file name alone)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(out.resolve()).as_posix()
    except ValueError:
        return path.name


# ---------- the stage ----------

def config_section(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """What the stage is built from: on when a tokenizer is given (tokenizer=PATH) or trained (tokenizer.train=true)."""
    tok = dict(cfg.get("tokenizer") or {})
    if not (tok.get("path") or tok.get("train")):
        return None
    return {"tokenizer": tok, **{key: cfg.get(key) for key in ("mixture", "holdout", "shards")}}


def training_texts(documents: Sequence[Path], max_bytes: int) -> Iterator[str]:
    """The kept documents in shard order, up to about `max_bytes` of text."""
    total = 0
    for path in documents:
        for doc in read_documents(path):
            if total >= max_bytes:
                return
            total += len(doc.text)
            yield doc.text


def get_tokenizer(ctx: StageContext, train: bool = True) -> RefactTokenizer | None:
    """The given tokenizer, else the one trained on the kept documents (trained now when `train` and missing)."""
    keys = config_from_dict(TokenizerKeys, ctx.cfg["tokenizer"], "tokenizer")
    if keys.path:
        return load_tokenizer(keys.path)
    out = ctx.root / "tokenizer"
    if (out / "tokenizer.json").exists():
        try:
            return load_tokenizer(out)
        except ValueError as err:  # trained here from the kept documents: derived data, trained again
            _log(f"[tokenize] {err}; training it again")
    if not train:
        return None
    print(f"[tokenize] training a byte-level BPE (vocab {keys.vocab_size}) on the kept documents", file=sys.stderr)
    try:
        tok = train_bpe(training_texts(ctx.input_shards, keys.train_max_bytes), keys.vocab_size, keys.min_frequency)
    except ValueError as exc:  # no text: every document was dropped
        raise DataError(f"{exc}: no document was kept to train the tokenizer on; see {ctx.root}/stats.json") from exc
    tok.save(out)
    return tok


def build_settings(ctx: StageContext, tok: RefactTokenizer) -> dict[str, Any]:
    """What a build depends on beyond the documents' content, as recorded in DIR/tokenize.json."""
    return json.loads(json.dumps({"tokenizer_sha256": tok.sha256, **{k: ctx.cfg.get(k) for k in
                                  ("mixture", "holdout", "shards")}, "documents": [p.name for p in ctx.input_shards]},
                                 sort_keys=True, default=str))


def record_path(ctx: StageContext) -> Path:
    return ctx.root / "tokenize.json"


class TokenizeStep(Step):
    """One unit: tokenize, hold out, mix and pack the published documents into DIR/shards/ (+ DIR/heldout/)."""

    name = "tokenize"

    def units(self, ctx: StageContext) -> list[str]:
        return ["shards"]

    def run(self, ctx: StageContext, unit: str) -> UnitStats:
        tok = get_tokenizer(ctx)
        record_path(ctx).unlink(missing_ok=True)
        workers = int(ctx.pipeline_cfg.get("workers") or len(os.sched_getaffinity(0)))
        manifest = build_shards(ctx.input_shards, ctx.root, tok, MixtureConfig.from_dict(ctx.cfg.get("mixture") or {}),
                                HoldoutConfig.from_dict(ctx.cfg.get("holdout") or {}), workers=workers,
                                shard_cfg=ShardConfig.from_dict(ctx.cfg.get("shards") or {}),
                                progress=bool(ctx.pipeline_cfg.get("progress", True)))
        counts = json.loads(json.dumps({"counts": manifest.counts, "mixture": manifest.mixture,
                                        "tokenizer_sha256": tok.sha256}, default=str))
        write_json_atomic(record_path(ctx), {"settings": build_settings(ctx, tok), "counts": counts})
        return UnitStats(extra={"documents_in": int(manifest.extra.get("documents_in", 0))})


class TokenizationStage(Stage):
    """Reads the published documents (not a previous stage's) and adds "shards" to DIR/stats.json."""

    makes_documents = False

    def complete(self, ctx: StageContext) -> bool:
        """Complete with the settings of this run; a build made with other settings is started over."""
        if not ctx.success_path.exists():
            return False
        tok = get_tokenizer(ctx, train=False)
        try:  # both are derived data: damaged (a crash, a cut copy), the shards are built again
            record = read_json(record_path(ctx), keys=("settings", "counts"))
            read_manifest(ctx.root)  # its index files too: the trainer's documents reader needs them
        except (OSError, DamagedFile, ManifestError) as err:
            _log(f"[tokenize] {err}; building the shards again")
            record = {}
        if tok is not None and record.get("settings") == build_settings(ctx, tok):
            return True
        shutil.rmtree(ctx.work_dir)  # its markers and stats: the next run builds again
        return False

    def pipeline_stats(self, ctx: StageContext) -> dict[str, Any]:
        return {"shards": read_json(record_path(ctx))["counts"]}


def build_stage(section: dict[str, Any]) -> Stage:
    MixtureConfig.from_dict(section.get("mixture") or {})  # a bad section fails now, before any work
    HoldoutConfig.from_dict(section.get("holdout") or {})
    ShardConfig.from_dict(section.get("shards") or {})
    tok = config_from_dict(TokenizerKeys, section["tokenizer"], "tokenizer")
    if tok.path:  # a missing path or a file that is no tokenizer fails now, not after every other stage
        load_tokenizer(tok.path)  # (~0.1 s for a 49k vocabulary, once per process)
    return TokenizationStage("tokenize", [TokenizeStep()])
