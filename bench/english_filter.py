"""English filter alone: MB of documents per CPU-second (one core) and its decisions, for config variants, on the
corpus of bench/pipeline_throughput.py (the Python standard library, installed packages' Python and Markdown).

Each variant runs `EnglishFilter.from_config(variant)` over the same documents; "changed" counts the documents whose
keep/drop decision differs from the first variant's. Run it with PYTHONPATH set to an older checkout to measure that
one's filter (`--variants default`: its config keys may be fewer).

    python bench/english_filter.py [--mb 16] [--variants default,scan8k,...]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_throughput import candidate_files  # noqa: E402  (bench/ is not a package)

from data_pipeline.filters.english import EnglishFilter  # noqa: E402
from data_pipeline.records import Document  # noqa: E402
from data_pipeline.sources.languages import classify_name  # noqa: E402

VARIANTS: dict[str, dict] = {
    "default": {},
    "scan 40k": {"code_scan_chars": 40_000},
    "scan 8k": {"code_scan_chars": 8_000},
    "scan 6k": {"code_scan_chars": 6_000},
    "scan 4k": {"code_scan_chars": 4_000},
    "scan 2k": {"code_scan_chars": 2_000},
    "scan 4k + tail 2k": {"code_scan_chars": 4_000, "code_tail_chars": 2_000},
    "scan 8k + tail 4k": {"code_scan_chars": 8_000, "code_tail_chars": 4_000},
    "text scan 1M": {"text_scan_chars": 1_000_000},
    "text only": {"check_code_comments": False},
}


def documents(mb: float) -> list[Document]:
    docs: list[Document] = []
    total = 0
    for src, rel in candidate_files():
        found = classify_name(src.name)
        if found is None or total >= mb * 1e6:
            continue
        try:
            text = src.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        docs.append(Document(id=str(rel), text=text, kind=found[0], lang=found[1], source="bench"))
        total += len(text.encode())
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=16)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=", ".join(VARIANTS))
    args = parser.parse_args()
    docs = documents(args.mb)
    code = [d for d in docs if d.kind == "code"]
    mb = sum(len(d.text.encode()) for d in docs) / 1e6
    print(f"{len(docs)} documents ({len(code)} code), {mb:.1f} MB "
          f"({sum(len(d.text.encode()) for d in code) / 1e6:.1f} MB code)")
    first: list[str | None] | None = None
    for name in args.variants.split(","):
        english = EnglishFilter.from_config(VARIANTS[name])
        english(docs[0])  # load grammars and model outside the timing
        start = time.process_time()
        said = [english(d) for d in docs]
        seconds = time.process_time() - start
        first = first if first is not None else said
        changed = sum((a is None) != (b is None) for a, b in zip(first, said))
        print(f"{name:18s} {mb / seconds:6.2f} MB/s  cpu {seconds:6.2f} s  dropped {sum(s is not None for s in said):4d}"
              f"  changed vs {args.variants.split(',')[0]}: {changed}", flush=True)


if __name__ == "__main__":
    main()
