"""The pipeline's last step: a tokenizer (given or trained on the kept documents), then `shards.build_shards`.

`build_shards` writes DIR/shards/ (manifest last) and DIR/heldout/ atomically; a finished build is recorded in
DIR/tokenize.json with the settings it used, so a rerun with the same settings skips it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

from data_pipeline.records import read_documents
from data_pipeline.stats import write_json_atomic


def training_texts(documents: list[Path], max_bytes: int) -> Iterator[str]:
    """The kept documents in shard order, up to about `max_bytes` of text."""
    total = 0
    for path in documents:
        for doc in read_documents(path):
            if total >= max_bytes:
                return
            total += len(doc.text)
            yield doc.text


def get_tokenizer(root: Path, documents: list[Path], tok_cfg: dict[str, Any], log: Callable[[str], None]):
    from data_pipeline.tokenizer import load_tokenizer, train_bpe

    if tok_cfg.get("path"):
        return load_tokenizer(str(tok_cfg["path"]))
    out = root / "tokenizer"
    if (out / "tokenizer.json").exists():
        return load_tokenizer(out)
    log(f"[tokenize] training a byte-level BPE (vocab {tok_cfg.get('vocab_size', 4096)}) on the kept documents")
    tok = train_bpe(training_texts(documents, int(tok_cfg.get("train_max_bytes", 200_000_000))),
                    vocab_size=int(tok_cfg.get("vocab_size", 4096)), min_frequency=int(tok_cfg.get("min_frequency", 2)))
    tok.save(out)
    return tok


def run_tokenize(root: Path, documents: list[Path], cfg: dict[str, Any], workers: int,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    from data_pipeline.mixing import HoldoutConfig, MixtureConfig
    from data_pipeline.packing import ShardConfig
    from data_pipeline.shards import build_shards

    mixture = MixtureConfig.from_dict(dict(cfg.get("mixture") or {}))
    holdout = HoldoutConfig.from_dict(dict(cfg.get("holdout") or {}))
    shard_cfg = ShardConfig.from_dict(dict(cfg.get("shards") or {}))
    tok = get_tokenizer(root, documents, dict(cfg.get("tokenizer") or {}), log)
    settings = json.loads(json.dumps({"tokenizer_sha256": tok.sha256, "mixture": cfg.get("mixture"),
                                      "holdout": cfg.get("holdout"), "shards": cfg.get("shards"),
                                      "documents": [p.name for p in documents]}, sort_keys=True, default=str))
    marker = root / "tokenize.json"
    if marker.exists() and (root / "shards" / "manifest.json").exists():
        done = json.loads(marker.read_text())
        if done.get("settings") == settings:
            log("[tokenize] complete, skipped")
            return done["counts"]
    marker.unlink(missing_ok=True)
    manifest = build_shards(documents, root, tok, mixture, holdout, workers=workers, shard_cfg=shard_cfg)
    counts = json.loads(json.dumps({"counts": manifest.counts, "mixture": manifest.mixture,
                                    "tokenizer_sha256": tok.sha256}, default=str))
    write_json_atomic(marker, {"settings": settings, "counts": counts})
    return counts
