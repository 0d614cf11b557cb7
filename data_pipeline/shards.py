"""The token-shard format: the writer, the manifest and the validated reader (docs/fim_and_shards.md).

A shards directory (`DIR/shards/`) holds, per split, `<split>-NNNNN.bin` (raw token ids, each document followed by
one EOT) and `<split>-NNNNN.idx.npy` (int64 document start offsets, length documents + 1, the last equal to the
number of tokens), a copy of the tokenizer and, written last, `manifest.json`. A document never straddles two
shards; every file is written under a temporary name and renamed (data_pipeline/atomic.py).

`read_manifest` checks what a trainer would otherwise trip over later: the format tag, the dtype, every listed file,
file sizes against token counts, index lengths against document counts, and (when the caller passes one) the
tokenizer hash. Every error names the file and says how to fix it. `open_split` / `open_split_documents` give the
memory maps; the trainer (refact_train/data.py) and the evals read shards only through them.
"""
from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from data_pipeline.atomic import atomic_path, write_text_atomic
from data_pipeline.config import config_from_dict

FORMAT = "refact-shards/1"
DTYPES = ("uint16", "uint32")
REBUILD = "rebuild the shards with `refact-pipeline` (stage=tokenize)"


@dataclass(frozen=True)
class ShardConfig:
    max_tokens_per_shard: int = 1 << 28  # 512 MiB per file at uint16; a longer document gets a shard of its own
    shuffle: bool = True  # shuffle the train documents (mixture.seed): repeats and kinds spread through the stream

    def __post_init__(self) -> None:
        if self.max_tokens_per_shard < 1:
            raise ValueError(f"shards.max_tokens_per_shard must be >= 1, got {self.max_tokens_per_shard}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ShardConfig":
        return config_from_dict(cls, values, "shards")


@dataclass(frozen=True)
class ShardInfo:
    file: str
    index: str
    tokens: int
    documents: int


class ShardWriter:
    """Appends documents to `<split>-NNNNN.bin` files of at most `max_tokens` tokens each."""

    def __init__(self, directory: str | Path, split: str, dtype: Any, eot_id: int, max_tokens: int):
        self.directory = Path(directory)
        self.split = split
        self.dtype = np.dtype(dtype)
        self.eot_id = eot_id
        self.max_tokens = max_tokens
        self.shards: list[ShardInfo] = []
        self._file = None
        self._pending = ExitStack()
        self._offsets: list[int] = []
        self._tokens = 0
        self._eot = np.array([eot_id], dtype=self.dtype)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _name(self, suffix: str) -> str:
        return f"{self.split}-{len(self.shards):05d}{suffix}"

    def _open(self) -> None:
        self._pending = ExitStack()  # closing it renames the finished .bin into place
        self._file = open(self._pending.enter_context(atomic_path(self.directory / self._name(".bin"))), "wb")
        self._offsets, self._tokens = [], 0

    def _finish(self) -> None:
        if self._file is None:
            return
        self._file.close()
        self._file = None
        bin_name, idx_name = self._name(".bin"), self._name(".idx.npy")
        offsets = np.asarray([*self._offsets, self._tokens], dtype=np.int64)
        with atomic_path(self.directory / idx_name) as tmp, open(tmp, "wb") as f:
            np.save(f, offsets)
        self._pending.close()
        self.shards.append(ShardInfo(bin_name, idx_name, self._tokens, len(self._offsets)))

    def add(self, tokens: np.ndarray) -> None:
        """One document's tokens, without EOT; the writer appends the EOT."""
        n = len(tokens) + 1
        if self._file is not None and self._offsets and self._tokens + n > self.max_tokens:
            self._finish()
        if self._file is None:
            self._open()
        self._offsets.append(self._tokens)
        self._file.write(np.asarray(tokens, dtype=self.dtype).tobytes())
        self._file.write(self._eot.tobytes())
        self._tokens += n

    def close(self) -> list[ShardInfo]:
        self._finish()
        return list(self.shards)


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
    extra: dict[str, Any]  # further keys (inputs, holdout, shards settings)

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
            "splits": {name: [asdict(s) for s in shards] for name, shards in self.splits.items()},
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


def _count(where: Path, what: str, value: Any) -> None:
    if type(value) is not int or value < 0:  # 41923.0, "41923" or true would fail later, far from the manifest
        raise ManifestError(f"{where}: {what} = {value!r}, expected a whole number >= 0; {REBUILD}")


def _parse(directory: Path, raw: Any) -> Manifest:
    where = directory / "manifest.json"
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: a JSON {type(raw).__name__}, expected an object; {REBUILD}")
    if raw.get("format") != FORMAT:
        raise ManifestError(f"{where}: format {raw.get('format')!r}, expected {FORMAT!r}; {REBUILD}")
    if raw.get("dtype") not in DTYPES:
        raise ManifestError(f"{where}: dtype {raw.get('dtype')!r} is not one of {DTYPES}; {REBUILD}")
    try:
        tok = TokenizerInfo(**raw["tokenizer"])
        splits = {name: [ShardInfo(**s) for s in shards] for name, shards in raw["splits"].items()}
        known = {"format", "tokenizer", "dtype", "eot_id", "mixture", "splits", "counts"}
        counts = {name: dict(c) for name, c in raw["counts"].items()}
        manifest = Manifest(directory, tok, raw["dtype"], int(raw["eot_id"]), raw.get("mixture", {}), splits, counts,
                            {k: v for k, v in raw.items() if k not in known})
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise ManifestError(f"{where}: malformed ({type(err).__name__}: {err}); {REBUILD}") from None
    for what, value in (("tokenizer.vocab_size", tok.vocab_size), ("eot_id", raw["eot_id"]),
                        *((f"splits[{name!r}][{i}].{key}", getattr(s, key)) for name, shards in splits.items()
                          for i, s in enumerate(shards) for key in ("tokens", "documents"))):
        _count(where, what, value)
    if manifest.eot_id >= tok.vocab_size:
        raise ManifestError(f"{where}: eot_id {manifest.eot_id} is not an id of the {tok.vocab_size}-entry "
                            f"vocabulary; {REBUILD}")
    for name in (tok.file, *(n for shards in splits.values() for s in shards for n in (s.file, s.index))):
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            # a path elsewhere would read another directory's files (a copied shard dir its original's)
            raise ManifestError(f"{where}: file name {name!r} is not a plain file name inside {directory}; "
                                f"{REBUILD}")
    if np.iinfo(np.dtype(manifest.dtype)).max < tok.vocab_size - 1:
        raise ManifestError(f"{where}: dtype {manifest.dtype} cannot hold the ids of a {tok.vocab_size}-entry "
                            f"vocabulary; {REBUILD}")
    return manifest


def _check_index(path: Path, s: ShardInfo) -> None:
    """documents + 1 integer offsets rising from 0 to the token count: every document holds at least its EOT, so an
    offset past the end, a negative one or two documents that overlap are refused here, not read as wrong tokens."""
    try:
        index = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:  # not a .npy file, or one of Python objects
        raise ManifestError(f"{path}: not an array of document offsets ({err}); {REBUILD}") from None
    if (index.dtype.kind not in "iu" or index.shape != (s.documents + 1,) or int(index[0]) != 0
            or int(index[-1]) != s.tokens or (s.documents and int(np.diff(index).min()) < 1)):
        raise ManifestError(f"{path}: {index.dtype} offsets of shape {index.shape}, expected documents+1 = "
                            f"{s.documents + 1} integers rising from 0 to {s.tokens}; {REBUILD}")


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
                _check_index(d / s.index, s)
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
                            f"{manifest.tokenizer.sha256}, the given tokenizer is {tokenizer_sha256}; use "
                            f"{manifest.tokenizer_path} (tokenizer=PATH) or rebuild the shards with your tokenizer")
    _check_files(manifest, check_index)
    return manifest


def write_manifest(manifest: Manifest) -> Path:
    target = manifest.directory / "manifest.json"
    write_text_atomic(target, json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n")
    return target


def split_arrays(manifest: Manifest, split: str) -> list[np.memmap]:
    """The non-empty shards of one split of a validated manifest, each a read-only memory map of token ids."""
    if split not in manifest.splits:
        raise ManifestError(f"{manifest.directory}/manifest.json: no split {split!r} (has {sorted(manifest.splits)})")
    d = manifest.directory
    return [np.memmap(d / s.file, dtype=manifest.dtype, mode="r", shape=(s.tokens,))
            for s in manifest.splits[split] if s.tokens > 0]


def open_split(path: str | Path, split: str, tokenizer_sha256: str | None = None) -> list[np.memmap]:
    """The shards of one split, each a read-only memory map of token ids (documents separated by EOT)."""
    return split_arrays(read_manifest(path, tokenizer_sha256=tokenizer_sha256, check_index=False), split)


def open_split_documents(path: str | Path, split: str) -> list[tuple[np.memmap, np.ndarray]]:
    """(tokens, document start offsets) per shard of one split: document i is tokens[idx[i]:idx[i+1]] (EOT last)."""
    manifest = read_manifest(path, check_index=True)
    arrays = split_arrays(manifest, split)
    indexes = [np.load(manifest.directory / s.index) for s in manifest.splits[split] if s.tokens > 0]
    return list(zip(arrays, indexes))


def write_shards(directory: str | Path, splits: Mapping[str, Iterable[Sequence[int] | np.ndarray]], tokenizer: Any,
                 *, mixture: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                 max_tokens_per_shard: int = ShardConfig.max_tokens_per_shard, progress: bool = True,
                 totals: Mapping[str, int] | None = None) -> Manifest:
    """Pack already-tokenized documents (no EOT; the writer adds it) into a shards directory with its manifest.

    `splits` maps a split name ("train", "valid") to its documents in stream order (`totals`: their number, for the
    progress bar of a generator). Writes the tokenizer copy, the shard files and, last, `manifest.json`; returns the
    validated manifest.
    """
    d = Path(directory)
    tokenizer.save(d)
    dtype = np.dtype(tokenizer.token_dtype)
    infos: dict[str, list[ShardInfo]] = {}
    for name, docs in splits.items():
        writer = ShardWriter(d, name, dtype, tokenizer.eot_id, max_tokens_per_shard)
        total = (totals or {}).get(name)
        for tokens in tqdm(docs, desc=f"pack {name}", unit="doc", total=total, disable=not progress):
            writer.add(np.asarray(tokens))
        infos[name] = writer.close()
    manifest = Manifest(
        directory=d,
        tokenizer=TokenizerInfo(tokenizer.sha256, tokenizer.vocab_size, tokenizer.padded_vocab_size),
        dtype=dtype.name,
        eot_id=tokenizer.eot_id,
        mixture=mixture or {"weights": {}, "by": "kind", "tokens_before": {}, "tokens_after": {}},
        splits=infos,
        counts={name: {"tokens": sum(s.tokens for s in shards), "documents": sum(s.documents for s in shards)}
                for name, shards in infos.items()},
        extra=extra or {},
    )
    write_manifest(manifest)
    return read_manifest(d, tokenizer_sha256=tokenizer.sha256)
