"""The token-shard manifest (api.md, "Token shards"): its types, validation and the memory-mapped readers.

`read_manifest` checks what a trainer would otherwise trip over later: the format tag, the dtype, every listed file,
file sizes against token counts, index lengths against document counts, and (when the caller passes one) the
tokenizer hash. Every error names the file and says how to fix it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.packing import ShardInfo

FORMAT = "refact-shards/1"
DTYPES = ("uint16", "uint32")
REBUILD = "rebuild the shards with `refact-pipeline` (or data_pipeline.shards.build_shards)"


class ManifestError(ValueError):
    """A token-shard directory that a reader cannot use as it is."""


class MissingShardsError(ManifestError, FileNotFoundError):
    """No manifest where token shards were expected (also a FileNotFoundError, for callers that catch those)."""


@dataclass(frozen=True)
class TokenizerInfo:
    sha256: str
    vocab_size: int
    padded_vocab_size: int
    file: str = "tokenizer.json"


@dataclass(frozen=True)
class Manifest:
    directory: Path  # the shards directory (DIR/shards)
    tokenizer: TokenizerInfo
    dtype: str
    eot_id: int
    mixture: dict[str, Any]
    splits: dict[str, list[ShardInfo]]
    counts: dict[str, dict[str, int]]
    extra: dict[str, Any]  # keys beyond api.md (inputs, holdout, shards settings)

    @property
    def tokenizer_path(self) -> Path:
        return self.directory / self.tokenizer.file

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "tokenizer": dict(vars(self.tokenizer)),
            "dtype": self.dtype,
            "eot_id": self.eot_id,
            "mixture": self.mixture,
            "splits": {name: [s.to_json() for s in shards] for name, shards in self.splits.items()},
            "counts": self.counts,
            **self.extra,
        }


def shards_dir(path: str | Path) -> Path:
    """`DIR/shards` for a pipeline output directory, or `path` itself when it holds the manifest."""
    p = Path(path)
    if (p / "manifest.json").is_file():
        return p
    if (p / "shards" / "manifest.json").is_file():
        return p / "shards"
    raise MissingShardsError(f"no token shards at {p}: expected {p}/shards/manifest.json or {p}/manifest.json; "
                        f"{REBUILD} with a tokenizer")


def _parse(directory: Path, raw: dict[str, Any]) -> Manifest:
    where = directory / "manifest.json"
    if raw.get("format") != FORMAT:
        raise ManifestError(f"{where}: format {raw.get('format')!r}, expected {FORMAT!r}; {REBUILD}")
    if raw.get("dtype") not in DTYPES:
        raise ManifestError(f"{where}: dtype {raw.get('dtype')!r} is not one of {DTYPES}; {REBUILD}")
    try:
        tok = TokenizerInfo(**raw["tokenizer"])
        splits = {name: [ShardInfo(**s) for s in shards] for name, shards in raw["splits"].items()}
        known = {"format", "tokenizer", "dtype", "eot_id", "mixture", "splits", "counts"}
        manifest = Manifest(directory, tok, raw["dtype"], int(raw["eot_id"]), raw.get("mixture", {}), splits,
                            raw["counts"], {k: v for k, v in raw.items() if k not in known})
    except (KeyError, TypeError) as err:
        raise ManifestError(f"{where}: malformed ({type(err).__name__}: {err}); {REBUILD}") from None
    if np.iinfo(np.dtype(manifest.dtype)).max < tok.vocab_size - 1:
        raise ManifestError(f"{where}: dtype {manifest.dtype} cannot hold the ids of a {tok.vocab_size}-entry "
                            f"vocabulary; {REBUILD}")
    return manifest


def _check_files(manifest: Manifest, check_index: bool) -> None:
    d = manifest.directory
    itemsize = np.dtype(manifest.dtype).itemsize
    if not manifest.tokenizer_path.is_file():
        raise ManifestError(f"{manifest.tokenizer_path}: the tokenizer copy named by {d}/manifest.json is missing; "
                            f"{REBUILD}")
    for split, shards in manifest.splits.items():
        tokens = documents = 0
        for s in shards:
            for name in (s.file, s.index):
                if not (d / name).is_file():
                    raise ManifestError(f"{d / name}: missing (listed in {d}/manifest.json, split {split!r}); {REBUILD}")
            size = (d / s.file).stat().st_size
            if size != s.tokens * itemsize:
                raise ManifestError(f"{d / s.file}: {size} bytes, the manifest says {s.tokens} tokens of "
                                    f"{manifest.dtype} ({s.tokens * itemsize} bytes): wrong dtype or a truncated "
                                    f"file; {REBUILD}")
            if check_index:
                index = np.load(d / s.index, mmap_mode="r")
                if len(index) != s.documents + 1 or int(index[0]) != 0 or int(index[-1]) != s.tokens:
                    raise ManifestError(f"{d / s.index}: {len(index)} offsets (expected documents+1 = "
                                        f"{s.documents + 1}, from 0 to {s.tokens}); {REBUILD}")
            tokens += s.tokens
            documents += s.documents
        counted = manifest.counts.get(split, {})
        if counted.get("tokens") != tokens or counted.get("documents") != documents:
            raise ManifestError(f"{d}/manifest.json: counts[{split!r}] = {counted} but its shards hold {tokens} "
                                f"tokens in {documents} documents; {REBUILD}")


def read_manifest(path: str | Path, tokenizer_sha256: str | None = None, check_index: bool = True) -> Manifest:
    """Read and validate the manifest of `path` (a pipeline output dir or its `shards/` dir).

    `tokenizer_sha256`: the hash of the tokenizer the caller will use (`tok.sha256`); a mismatch is an error.
    """
    directory = shards_dir(path)
    try:
        raw = json.loads((directory / "manifest.json").read_text())
    except json.JSONDecodeError as err:
        raise ManifestError(f"{directory}/manifest.json: not JSON ({err}); {REBUILD}") from None
    manifest = _parse(directory, raw)
    if tokenizer_sha256 is not None and tokenizer_sha256 != manifest.tokenizer.sha256:
        raise ManifestError(f"{directory}/manifest.json: shards were tokenized with tokenizer sha256 "
                            f"{manifest.tokenizer.sha256[:12]}..., the given tokenizer is {tokenizer_sha256[:12]}...; "
                            f"train with {manifest.tokenizer_path} or rebuild the shards with your tokenizer")
    _check_files(manifest, check_index)
    return manifest


def write_manifest(manifest: Manifest) -> Path:
    target = manifest.directory / "manifest.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n")
    tmp.replace(target)
    return target


def open_split(path: str | Path, split: str, tokenizer_sha256: str | None = None) -> list[np.memmap]:
    """The shards of one split, each a read-only memory map of token ids (documents separated by EOT)."""
    manifest = read_manifest(path, tokenizer_sha256=tokenizer_sha256, check_index=False)
    if split not in manifest.splits:
        raise ManifestError(f"{manifest.directory}/manifest.json: no split {split!r} (has {sorted(manifest.splits)})")
    d = manifest.directory
    return [np.memmap(d / s.file, dtype=manifest.dtype, mode="r", shape=(s.tokens,))
            for s in manifest.splits[split] if s.tokens > 0]


def open_split_documents(path: str | Path, split: str) -> list[tuple[np.memmap, np.ndarray]]:
    """(tokens, document start offsets) per shard of one split: document i is tokens[idx[i]:idx[i+1]] (EOT last)."""
    manifest = read_manifest(path, check_index=True)
    if split not in manifest.splits:
        raise ManifestError(f"{manifest.directory}/manifest.json: no split {split!r} (has {sorted(manifest.splits)})")
    d = manifest.directory
    return [(np.memmap(d / s.file, dtype=manifest.dtype, mode="r", shape=(s.tokens,)), np.load(d / s.index))
            for s in manifest.splits[split] if s.tokens > 0]
