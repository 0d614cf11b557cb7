"""Ingest: language and licence detection, the reason for every file that is not a document, record sources."""
import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_pipeline.records import Document
from data_pipeline.sources import FileRules, classify, license_from_text, read_file, shebang_language, walk
from data_pipeline.sources import tables
from data_pipeline.sources.files import Skipped
from data_pipeline.sources.licenses import repository_license, spdx_from_header
from data_pipeline.sources.ingest import InputError, detect_format

from pipeline_corpus import GPL3, MIT


def test_languages_from_extension_filename_and_shebang():
    assert classify("a.py", "") == ("code", "python")
    assert classify("Makefile", "") == ("code", "makefile")
    assert classify("README.md", "") == ("text", "markdown")
    assert classify("tool", "#!/usr/bin/env python3 -u\nprint()") == ("code", "python")
    assert classify("run", "#!/bin/bash\n") == ("code", "shell")
    assert classify("data.xyz", "hello") is None
    assert shebang_language("#!/usr/bin/node") == "javascript"
    assert shebang_language("# not a shebang") is None


@pytest.mark.parametrize("text,spdx", [
    (MIT, "MIT"), (GPL3, "GPL-3.0"), ("Apache License\nVersion 2.0, January 2004", "Apache-2.0"),
    ("Redistribution and use in source and binary forms ... Neither the name of", "BSD-3-Clause"),
    ("Redistribution and use in source and binary forms, with or without modification", "BSD-2-Clause"),
    ("This is free and unencumbered software released into the public domain.", "Unlicense"),
    ("MIT", "MIT"), ("some random words that name no licence at all, just prose", None),
])
def test_license_text_detection(text, spdx):
    assert license_from_text(text) == spdx


def test_real_license_files_that_mention_other_licences():
    import sysconfig
    from pathlib import Path
    python_license = (Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt").read_text()
    assert "GPL" in python_license and license_from_text(python_license) == "Python-2.0"
    assert license_from_text(MIT + "\nThis is not the GNU General Public License version 3.") == "MIT"


def test_spdx_header_and_nearest_license_file(tmp_path):
    assert spdx_from_header("/* SPDX-License-Identifier: MIT OR Apache-2.0 */\nint x;") == "MIT OR Apache-2.0"
    assert spdx_from_header("# SPDX-License-Identifier: GPL-2.0-or-later\n") == "GPL-2.0"
    (tmp_path / "LICENSE").write_text(MIT)
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    (tmp_path / "sub" / "COPYING").write_text(GPL3)
    assert repository_license(tmp_path / "a.py", tmp_path) == "MIT"
    assert repository_license(tmp_path / "sub" / "deep" / "b.py", tmp_path) == "GPL-3.0"


@pytest.mark.parametrize("header,spdx", [
    ("# SPDX-License-Identifier:\nimport os\n", None),  # was "import os": the file dropped as not_permissive
    ("/* SPDX-License-Identifier: */\nint x;\n", None),
    ("// SPDX-License-Identifier: MIT\n// bundled below:\n// SPDX-License-Identifier: GPL-3.0-only\n",
     "MIT AND GPL-3.0"),  # was "MIT": a bundled GPL part was kept as permissive
    ("// SPDX-License-Identifier: MIT\n// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0\n",
     "MIT AND (Apache-2.0 OR GPL-2.0)"),
    ("// SPDX-License-Identifier: MIT\n/* SPDX-License-Identifier: MIT */\n", "MIT"),
    ("# SPDX-License-Identifier: LicenseRef-Proprietary\n", "LicenseRef-Proprietary"),
    ("# SPDX-License-Identifier: (MIT AND Apache-2.0)\n", "(MIT AND Apache-2.0)"),
])
def test_spdx_headers_empty_or_several(header, spdx):
    from data_pipeline.filters.license import DEFAULT_PERMISSIVE, expression_allowed

    assert spdx_from_header(header) == spdx
    if spdx == "MIT AND GPL-3.0":  # what the licence filter makes of it: not permissive
        assert not expression_allowed(spdx, frozenset(p.lower() for p in DEFAULT_PERMISSIVE))


def _read(root, rel, **rules):
    return read_file(root, rel, "src", FileRules(**rules))


def test_bad_files_become_reasons_not_crashes(tmp_path):
    (tmp_path / "bin.py").write_bytes(b"abc\x00def")
    (tmp_path / "empty.py").write_text("")
    (tmp_path / "blank.py").write_text("  \n\n")
    (tmp_path / "big.py").write_text("x = 1\n" * 3000)
    (tmp_path / "one_line.js").write_text("a" * 6000)
    (tmp_path / "mixed.py").write_bytes("é".encode() + b"\xe9")
    (tmp_path / "legacy.py").write_bytes(b"# caf\xe9\nx = 1\n")
    (tmp_path / "fifo.py").mkdir()  # a directory where a file is expected
    os.symlink(tmp_path / "nowhere", tmp_path / "dead.py")
    os.symlink(tmp_path / "big.py", tmp_path / "alias.py")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "x.js").write_text("x")
    (tmp_path / "app.min.js").write_text("x")
    reasons = {rel: _read(tmp_path, rel, max_file_bytes=10_000) for rel in
               ["bin.py", "empty.py", "blank.py", "big.py", "one_line.js", "mixed.py", "fifo.py", "dead.py",
                "alias.py", "node_modules/x.js", "app.min.js", "gone.py"]}
    assert {k: v.reason for k, v in reasons.items()} == {
        "bin.py": "binary", "empty.py": "empty", "blank.py": "empty", "big.py": "too_large",
        "one_line.js": "minified", "mixed.py": "encoding:mixed", "fifo.py": "not_regular_file",
        "dead.py": "broken_symlink", "alias.py": "symlink", "node_modules/x.js": "vendored",
        "app.min.js": "generated", "gone.py": "unreadable"}
    legacy = _read(tmp_path, "legacy.py")
    assert isinstance(legacy, Document) and legacy.text.startswith("# café") and legacy.meta["encoding"] == "cp1252"
    assert _read(tmp_path, "legacy.py", fallback_encoding=None).reason == "encoding:not_utf8"


def test_walk_skips_vcs_and_lists_git_tracked_files(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("x")
    (tmp_path / "a.py").write_text("x = 1\n")
    assert walk(tmp_path, FileRules(use_git=False)).files == ["a.py"]
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "tracked.py").write_text("x = 1\n")
    (repo / "untracked.py").write_text("y = 2\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "tracked.py"], check=True)
    assert walk(repo, FileRules()).files == ["tracked.py"]
    assert walk(repo, FileRules(use_git=False)).files == ["tracked.py", "untracked.py"]
    # a directory of cloned repositories: each contributes its tracked files
    assert walk(tmp_path, FileRules(use_git=False)).files == ["a.py", "repo/tracked.py", "repo/untracked.py"]
    (tmp_path / ".git").rename(tmp_path / "not_a_repo")
    assert walk(tmp_path, FileRules()).files == ["a.py", "not_a_repo/config", "repo/tracked.py"]


def _docs(items):
    return [x for x in items if isinstance(x, Document)], [x for x in items if isinstance(x, Skipped)]


def test_jsonl_ranges_cover_every_line_once(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"id": i, "text": f"document number {i} " * (i % 7 + 1)}) for i in range(200)]
    lines[17] = '{"id": 17, "text": "cut'
    path.write_text("\n".join(lines) + "\n\n")
    with open(path, "rb") as f:
        plan = tables.plan_jsonl(f, chunk_bytes=500)
        assert len(plan) > 5 and sum(r["inputs"] for r in plan) == 200  # the blank line is no input
        got = []
        for r in plan:
            got += tables.read_jsonl(f, r["start"], r["end"], r["first_line"], name="d.jsonl", source="s",
                                     fields=tables.DEFAULT_FIELDS, default_kind="text")
    docs, skipped = _docs(got)
    assert [d.id for d in docs] == [f"s/{i}" for i in range(200) if i != 17]
    assert [(s.path, s.reason) for s in skipped] == [("d.jsonl:18", "corrupt:jsonl")]


def test_records_kind_from_fields_path_or_language():
    fields = tables.DEFAULT_FIELDS
    as_doc = lambda rec: tables.record_to_document(rec, source="s", locator="f:1", fields=fields, default_kind="text")
    stack = as_doc({"content": "x = 1", "max_stars_repo_path": "a/b.py", "max_stars_repo_licenses": ["MIT"]})
    assert (stack.kind, stack.lang, stack.license, stack.path) == ("code", "python", "MIT", "a/b.py")
    assert as_doc({"text": "int x;", "lang": "C"}).kind == "code"
    assert as_doc({"text": "hello world"}).kind == "text"
    assert as_doc({"title": "no text"}).reason == "missing_text"
    assert as_doc([1, 2]).reason == "corrupt_record"


def test_parquet_and_saved_hf_dataset(tmp_path):
    rows = [{"id": str(i), "text": f"row {i}", "kind": "text"} for i in range(50)]
    pq.write_table(pa.Table.from_pylist(rows), str(tmp_path / "d.parquet"), row_group_size=10)
    common = {"name": "d.parquet", "source": "s", "fields": tables.DEFAULT_FIELDS, "default_kind": "text"}
    with open(tmp_path / "d.parquet", "rb") as f:
        plan = tables.plan_parquet(f, rows_per_item=20)
        assert [(p["first_row"], p["inputs"]) for p in plan] == [(0, 20), (20, 20), (40, 10)]
        got = [d for p in plan for d in tables.read_parquet(f, p["row_groups"], p["first_row"], **common)]
    assert [d.id for d in got] == [f"s/{i}" for i in range(50)]

    import datasets
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"), num_shards=2)
    assert detect_format(tmp_path / "saved") == "hf_disk"
    shards = tables.saved_dataset_shards(tmp_path / "saved", None)
    assert len(shards) == 2
    got, first_row = [], 0
    for rel in shards:
        with open(tmp_path / "saved" / rel, "rb") as f:
            plan = tables.plan_arrow(f, rows_per_item=10)
            got += [d for p in plan for d in tables.read_arrow(f, p["start"], p["end"], first_row, **common)]
            first_row += sum(p["inputs"] for p in plan)
    assert [d.text for d in got] == [r["text"] for r in rows]


def test_format_detection_errors_name_the_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        detect_format(tmp_path / "nope")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(InputError, match="x.csv"):
        detect_format(tmp_path / "x.csv")
    os.mkfifo(tmp_path / "fifo.jsonl")  # with ingest.format=jsonl, /dev/zero or a FIFO was read forever
    for endless in (tmp_path / "fifo.jsonl", Path("/dev/zero")):
        with pytest.raises(InputError, match="not a regular file or a directory"):
            detect_format(endless, "jsonl")


def test_folder_of_data_files_through_the_ingest_stage(tmp_path):
    from data_pipeline.executor import run_stage
    from data_pipeline.sources.ingest import build_stage
    from data_pipeline.stage import StageContext
    from data_pipeline.records import read_documents

    (tmp_path / "ds" / "data").mkdir(parents=True)
    (tmp_path / "ds" / "data" / "train.jsonl").write_text(
        "\n".join(json.dumps({"text": f"row {i}", "id": i}) for i in range(7)) + "\n")
    pq.write_table(pa.Table.from_pylist([{"text": f"row {i}", "id": i} for i in range(7, 12)]),
                   str(tmp_path / "ds" / "data" / "more.parquet"), row_group_size=3)
    (tmp_path / "ds" / "README.md").write_text("# a dataset card: not data\n")
    cfg = {"input": str(tmp_path / "ds"), "ingest": {"format": "hf_files", "rows_per_shard": 3, "shard_bytes": 40}}
    ctx = StageContext("ingest", 0, tmp_path / "out", (), cfg["ingest"], cfg)
    assert run_stage(build_stage(cfg["ingest"]), ctx, progress=False).complete
    docs = [d for p in sorted(ctx.documents_dir.glob("part-*.parquet")) for d in read_documents(p)]
    assert sorted(d.id for d in docs) == sorted(f"ds/{i}" for i in range(12))
    assert len(list(ctx.documents_dir.iterdir())) > 3  # byte ranges of the JSONL file, row groups of the Parquet
    stats = json.loads(ctx.stats_path.read_text())
    assert stats["dropped"] == {"unknown_type": 1}  # README.md
    assert stats["extra"]["sources"] == {"ds": {"seen": 13, "kept": 12, "dropped": 1}}


def test_generated_globs_as_one_regex_match_as_fnmatch_does():
    import fnmatch

    from data_pipeline.sources.files import _generated_matcher

    globs = ("*.min.js", "*.min.css", "*_pb2.py", "*.pb.go", "package-lock.json", "gen[0-9]?.c")
    names = ["a.min.js", "x_pb2.py", "package-lock.json", "package-lock.jsonx", "a.min.jsx", "foo.pb.go",
             "\nfoo.min.css", "a.py", ".min.js", "gen1x.c", "gen1.c", "genx1.c", "a.min.js\n"]
    match = _generated_matcher(globs)
    assert [bool(match(n)) for n in names] == [any(fnmatch.fnmatch(n, g) for g in globs) for n in names]
    assert _generated_matcher(())("a.min.js") is None


def test_the_runs_own_output_below_a_plain_folder_input_is_never_read(tmp_path):
    """`refact-pipeline input=. output=out` in a folder that is no git repository read its own
    out/pipeline_config.json (and on a rerun, the last run's stats) as documents."""
    from data_pipeline.cli import main

    (tmp_path / "repo" / "src").mkdir(parents=True)
    (tmp_path / "repo" / "src" / "a.py").write_text("def f():\n    return 1\n")
    out = tmp_path / "repo" / "out"
    for _ in range(2):  # the second run resumes: nothing is planned again
        assert main([f"input={tmp_path / 'repo'}", f"output={out}", "progress=false", "stage=ingest"]) == 0
    kept = [p for f in sorted((out / "stages" / "00_ingest" / "documents").glob("*.parquet"))
            for p in pq.read_table(f).column("path").to_pylist()]
    dropped = [(r["path"], r["reason"]) for f in sorted((out / "dropped").glob("ingest-*.parquet"))
               for r in pq.read_table(f).to_pylist()]
    assert kept == ["src/a.py"] and dropped == [("out", "pipeline_output")]
