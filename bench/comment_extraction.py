"""Comment extraction speed (MB of code per CPU-second, one core) on real files, per language, against an older
extractor read from git in the same run.

Files: the Python standard library (Python), and, where this machine has them, C headers (/usr/include) and npm's
JavaScript (/usr/lib/node_modules); the language of each file is the pipeline's (`classify_name`). Up to --mb MB per
language, in sorted path order. Both extractors see every file twice: whole, and cut at the English filter's
`code_scan_chars` (20,000 characters), the way the pipeline calls them. "letters" is the number of letters of
comment text each one found: a sanity check that both see about the same natural language.

    python bench/comment_extraction.py --old-rev REV   # REV: a commit whose comments.py is the extractor to beat
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
import time
import types
from pathlib import Path

from data_pipeline.filters.comments import extract_comments
from data_pipeline.sources.languages import classify_name

ROOTS = (Path(sysconfig.get_paths()["stdlib"]), Path("/usr/include"), Path("/usr/lib/node_modules"))
SKIP = {"test", "tests", "site-packages", "__pycache__"}


def load_old(rev: str):
    source = subprocess.run(["git", "show", f"{rev}:data_pipeline/filters/comments.py"], capture_output=True,
                            text=True, check=True, cwd=Path(__file__).resolve().parent).stdout
    module = types.ModuleType("old_comments")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{rev}:comments.py", "exec"), module.__dict__)
    return module.extract_comments


def real_files(mb: float) -> dict[str, list[str]]:
    by_lang: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for root in ROOTS:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            found = classify_name(path.name)
            if found is None or found[0] != "code" or SKIP & set(path.relative_to(root).parts) or not path.is_file():
                continue
            lang = found[1]
            if sizes.get(lang, 0) >= mb * 1e6:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            by_lang.setdefault(lang, []).append(text)
            sizes[lang] = sizes.get(lang, 0) + len(text.encode())
    return {lang: texts for lang, texts in by_lang.items() if sizes[lang] >= 0.2e6}  # enough to time


def timed(extract, texts: list[str], lang: str, cut: int | None) -> tuple[float, int]:
    start = time.process_time()
    letters = sum(sum(map(str.isalpha, "".join(extract(t[:cut] if cut else t, lang)))) for t in texts)
    return time.process_time() - start, letters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-rev", help="git revision of the extractor to compare with")
    parser.add_argument("--mb", type=float, default=4.0, help="MB of files per language")
    args = parser.parse_args()
    old = load_old(args.old_rev) if args.old_rev else None
    extract_comments("x = 1  # warm up\n", "python")
    for lang, texts in sorted(real_files(args.mb).items()):
        mb = sum(len(t.encode()) for t in texts) / 1e6
        for cut in (None, 20_000):
            mb_seen = sum(len(t[:cut].encode()) for t in texts) / 1e6 if cut else mb
            new_s, new_letters = timed(extract_comments, texts, lang, cut)
            line = (f"{lang:11s} {len(texts):5d} files {mb:5.1f} MB  {'first 20k chars' if cut else 'whole files':15s} "
                    f"new {mb_seen / new_s:6.2f} MB/s ({new_letters / 1e6:.2f} M letters)")
            if old is not None:
                old_s, old_letters = timed(old, texts, lang, cut)
                line += (f"  old {mb_seen / old_s:6.2f} MB/s ({old_letters / 1e6:.2f} M letters)  "
                         f"speed-up {old_s / new_s:5.1f}x")
            print(line, flush=True)


if __name__ == "__main__":
    main()
