"""Token shards made on the spot for scripts/gpu_check.sh's training step (the GPU box has no data and no internet):
this repository's own Python and Markdown files (about 1.3 MB of text), a byte-level BPE trained on them, written by
data_pipeline.shards.write_shards in the format refact-train reads. Deterministic; a few seconds.

  python bench/gpu_shards.py OUT_DIR [--vocab 4096] [--max-files N]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def documents(max_files: int | None = None) -> list[str]:
    files = sorted(p for pattern in ("**/*.py", "**/*.md") for p in REPO.glob(pattern)
                   if not any(part.startswith(".") or part in ("build", "runs") for part in p.relative_to(REPO).parts))
    return [p.read_text(encoding="utf-8", errors="replace") for p in files[:max_files]]


def make_shards(out: Path, vocab: int = 4096, max_files: int | None = None) -> dict:
    from data_pipeline.shards import write_shards
    from data_pipeline.tokenizer import train_bpe

    t0 = time.perf_counter()
    docs = documents(max_files)
    tok = train_bpe(docs, vocab_size=vocab, min_frequency=2)
    encoded = [tok.encode(d) for d in docs]
    valid = encoded[::20]  # every 20th file held out: the trainer needs only train, a valid split keeps it realistic
    train = [e for i, e in enumerate(encoded) if i % 20]
    manifest = write_shards(out / "shards", {"train": train, "valid": valid}, tok, progress=False)
    return {"dir": str(out), "documents": len(docs), "train_tokens": manifest.counts["train"]["tokens"],
            "vocab_size": tok.vocab_size, "padded_vocab_size": tok.padded_vocab_size,
            "seconds": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--max-files", type=int, default=None)
    args = ap.parse_args()
    print(make_shards(args.out, args.vocab, args.max_files))


if __name__ == "__main__":
    main()
