"""A small real corpus for trainer tests: Python standard-library sources, a BPE trained on them, token shards
written in the token-shard format (docs/fim_and_shards.md, "Token shards") with numpy."""
from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import numpy as np

STDLIB_FILES = ["textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "colorsys.py", "bisect.py", "heapq.py",
                "keyword.py", "numbers.py", "opcode.py", "stat.py", "string.py", "tabnanny.py", "this.py",
                "token.py", "tokenize.py", "uu.py", "wave.py", "getopt.py", "gettext.py", "copy.py", "cmd.py"]


def stdlib_documents() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [(root / f).read_text(encoding="utf-8") for f in STDLIB_FILES if (root / f).is_file()]


def write_corpus(out: Path, vocab_size: int = 768, docs: list[str] | None = None) -> Path:
    """Pipeline-style output dir `out` with `out/shards/` (train: all documents but two; valid: two), of `docs`
    (default: the stdlib files above) and a tokenizer trained on them."""
    from data_pipeline.tokenizer import train_bpe

    docs = docs or stdlib_documents()
    tok = train_bpe(docs, vocab_size=vocab_size, min_frequency=2)
    shards = out / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    tok.save(shards)
    for extra in ("tokenizer_config.json", "special_tokens_map.json"):
        (shards / extra).unlink(missing_ok=True)
    dtype = np.dtype(tok.token_dtype).name
    splits, counts = {}, {}
    for split, part in (("train", docs[:-2]), ("valid", docs[-2:])):
        entries = []
        # two shards per split, so reads cross a shard boundary
        for i, chunk in enumerate((part[: len(part) // 2], part[len(part) // 2:])):
            ids, starts = [], [0]
            for d in chunk:
                ids += tok.encode(d) + [tok.eot_id]
                starts.append(len(ids))
            name = f"{split}-{i:05d}"
            np.asarray(ids, dtype=dtype).tofile(shards / f"{name}.bin")
            np.save(shards / f"{name}.idx.npy", np.asarray(starts, dtype=np.int64))
            entries.append({"file": f"{name}.bin", "index": f"{name}.idx.npy", "tokens": len(ids),
                            "documents": len(chunk)})
        splits[split] = entries
        counts[split] = {"tokens": sum(e["tokens"] for e in entries), "documents": len(part)}
    manifest = {"format": "refact-shards/1",
                "tokenizer": {"sha256": tok.sha256, "vocab_size": tok.vocab_size,
                              "padded_vocab_size": tok.padded_vocab_size, "file": "tokenizer.json"},
                "dtype": dtype, "eot_id": tok.eot_id,
                "mixture": {"weights": {"code": 1.0}, "by": "kind", "tokens_before": {}, "tokens_after": {}},
                "splits": splits, "counts": counts}
    (shards / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def with_split(corpus: Path, out: Path, split: str, documents: list[list[int]]) -> Path:
    """A copy of `corpus` at `out` whose `split` holds `documents` (token ids, each then one EOT) in one shard."""
    import shutil
    shutil.copytree(corpus, out)
    shards = out / "shards"
    manifest = json.loads((shards / "manifest.json").read_text())
    for entry in manifest["splits"][split]:
        (shards / entry["file"]).unlink()
        (shards / entry["index"]).unlink()
    ids = [t for doc in documents for t in [*doc, manifest["eot_id"]]]
    np.asarray(ids, dtype=manifest["dtype"]).tofile(shards / f"{split}-00000.bin")
    np.save(shards / f"{split}-00000.idx.npy", np.cumsum([0] + [len(d) + 1 for d in documents]).astype(np.int64))
    manifest["splits"][split] = [{"file": f"{split}-00000.bin", "index": f"{split}-00000.idx.npy",
                                  "tokens": len(ids), "documents": len(documents)}]
    manifest["counts"][split] = {"tokens": len(ids), "documents": len(documents)}
    (shards / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out
