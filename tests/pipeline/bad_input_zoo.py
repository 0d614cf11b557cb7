"""The bad-input zoo: a folder of good files beside every kind of bad input a decade-old monorepo holds, with the
exact outcome expected of each, and a secret planted behind every kind of link (none of it may reach an output).

`build_zoo(tmp)` writes the inputs and returns `Zoo`: the inputs to pass, the expected outcome of every entry
(`KEPT` or the drop reason, keyed by (source, path as dropped/ and documents/ show it)), and the secret.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

KEPT = "kept"
MAX_FILE_BYTES = 100_000
UNREADABLE_OWNER = 12345  # a uid outside the user namespace the run is started in: no capability applies to it


def good_module(i: int) -> str:
    return f'"""Module {i}."""\n\n\ndef add_{i}(a, b):\n    return a + b + {i}\n'


@dataclass
class Zoo:
    inputs: list[Path]
    expected: dict[tuple[str, str], str] = field(default_factory=dict)
    secret: str = ""
    outside: Path | None = None
    classes: set[str] = field(default_factory=set)  # kinds of bad input in the zoo

    def expect(self, source: str, path: str, outcome: str, kind: str) -> None:
        self.expected[(source, path)] = outcome
        self.classes.add(kind)


def plant_secret(outside: Path, secret: str) -> None:
    """Files and directories outside the input whose content and names hold the secret."""
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.py").write_text(f"API_KEY = '{secret}'\n")
    (outside / "LICENSE").write_text(f"GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007 {secret}\n")
    (outside / "dir" / f"{secret}.py").write_text(f"TOKEN = '{secret}'\n")
    (outside / "records.jsonl").write_text(json.dumps({"text": f"x = '{secret}'\n", "path": "s.py"}) + "\n")
    pq.write_table(pa.Table.from_pylist([{"text": f"y = '{secret}'\n"}]), str(outside / "rows.parquet"))
    repo = outside / "repo"  # a repository whose index names the secret
    repo.mkdir()
    (repo / f"{secret}.py").write_text(f"K = '{secret}'\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def corrupt_a_page(path: Path, group: int) -> None:
    """Overwrite 4 bytes at the start of row group `group`'s first page so that decoding it fails (bad header or
    bad snappy data), and check that it does."""
    column = pq.ParquetFile(str(path)).metadata.row_group(group).column(0)
    original = path.read_bytes()
    for k in range(16, 0, -4):  # the page data sits a few bytes after the header: prefer a snappy failure
        data = bytearray(original)
        data[column.data_page_offset + k: column.data_page_offset + k + 4] = b"\xff\xff\xff\x7f"
        path.write_bytes(bytes(data))
        try:
            pq.ParquetFile(str(path)).read_row_group(group).to_pylist()
        except OSError:
            return
    raise AssertionError("could not corrupt a Parquet page")


def lock(path: Path) -> None:
    if os.geteuid() == 0:
        os.chown(path, UNREADABLE_OWNER, UNREADABLE_OWNER)
    path.chmod(0)


def build_zoo(tmp: Path, unreadable: bool) -> Zoo:
    secret = f"SECRET-{uuid.uuid4().hex}"
    outside = tmp / "outside"
    plant_secret(outside, secret)
    repo = tmp / "monorepo"
    repo.mkdir()
    zoo = Zoo(inputs=[repo], secret=secret, outside=outside)
    src = "monorepo"

    def write(rel: str, data: bytes | str) -> Path:
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return p

    for i in range(12):
        write(f"src/good_{i:02d}.py", good_module(i))
        zoo.expect(src, f"src/good_{i:02d}.py", KEPT, "good file")
    cases = {  # rel: (content, outcome, class)
        "bad/binary.py": (b"\x7fELF\x00\x01\x02 binary", "binary", "binary"),
        "bad/mixed.py": ("# café\n".encode() + b"# caf\xe9\nx = 1\n", "encoding:mixed", "invalid UTF-8"),
        "bad/legacy.py": (b"# caf\xe9 (cp1252)\nx = 1\n", KEPT, "legacy single-byte encoding"),
        "bad/utf16.py": ("x = 'utf-16'\n".encode("utf-16"), "binary", "UTF-16"),
        "bad/empty.py": (b"", "empty", "empty"),
        "bad/blank.py": (b"  \n\t\n", "empty", "whitespace only"),
        "bad/one_line.py": (b"x = 1;" * (MAX_FILE_BYTES // 5), "too_large", "huge one-line file"),
        "bad/bundle.js": ("var a=" + "1+" * 3000 + "1;\n", "minified", "minified JS"),
        "bad/app.min.js": ("var a=1;\n", "generated", "generated file"),
        "bad/data.xyz": ("plain words\n", "unknown_type", "unknown type"),
        "node_modules/lib/index.js": ("module.exports = 1;\n", "vendored", "vendored"),
        "LICENSE": ("MIT License\nPermission is hereby granted, free of charge, to any person obtaining a copy\n",
                    "license_file", "licence file"),
        "names/new\nline.py": ("x = 'newline in the name'\n", KEPT, "newline in a file name"),
        "names/ünïcödé.py": ("x = 'unicode name'\n", KEPT, "non-ASCII UTF-8 name"),
    }
    for rel, (content, outcome, kind) in cases.items():
        write(rel, content)
        zoo.expect(src, rel, outcome, kind)
    os.link(repo / "src" / "good_00.py", repo / "bad" / "hard_link.py")  # a hard link is an ordinary file
    zoo.expect(src, "bad/hard_link.py", KEPT, "hard link")
    name = os.fsencode("names/caf") + b"\xe9.py"  # not UTF-8: kept, shown escaped
    (repo / os.fsdecode(name)).write_text("x = 'latin-1 name'\n")
    zoo.expect(src, "names/caf\\xe9.py", KEPT, "non-UTF-8 file name")
    deep = repo.joinpath(*["d"] * 300)
    deep.mkdir(parents=True)
    (deep / "deep.py").write_text("x = 'three hundred levels down'\n")
    zoo.expect(src, "d/" * 300 + "deep.py", KEPT, "300-level nesting")
    os.mkfifo(repo / "bad" / "pipe.py")
    zoo.expect(src, "bad/pipe.py", "not_regular_file", "FIFO")
    links = {  # rel: (target, outcome, class)
        "links/loop_a.py": ("loop_b.py", "symlink_loop", "symlink loop"),
        "links/loop_b.py": ("loop_a.py", "symlink_loop", "symlink loop"),
        "links/self.py": ("self.py", "symlink_loop", "symlink to itself"),
        "links/dangling.py": ("missing.py", "broken_symlink", "broken symlink"),
        "links/alias.py": ("../src/good_01.py", "symlink", "symlink inside the input"),
        "links/src_dir": ("../src", "symlink", "directory symlink inside the input"),
        "links/leak.py": (str(outside / "secret.py"), "symlink_outside_input", "symlink out of the input"),
        "links/up.py": ("../../outside/secret.py", "symlink_outside_input", "relative `..` symlink out"),
        "links/outdir": (str(outside / "dir"), "symlink_outside_input", "directory symlink out"),
        "links/root_link": ("/", "symlink_outside_input", "symlink to /"),
        "licensed/LICENSE": (str(outside / "LICENSE"), "symlink_outside_input", "LICENSE symlinked out"),
        "licensed/README.md": (str(outside / "secret.py"), "symlink_outside_input", "README symlinked out"),
    }
    for rel, (target, outcome, kind) in links.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, repo / rel)
        zoo.expect(src, rel, outcome, kind)
    write("licensed/code.py", "x = 'its LICENSE is a link: no licence is read from it'\n")
    zoo.expect(src, "licensed/code.py", KEPT, "file beside a linked LICENSE")

    # git repositories inside the folder
    tracked = repo / "clone"
    tracked.mkdir()
    (tracked / "main.py").write_text("x = 'tracked'\n")
    (tracked / "pkg").mkdir()
    (tracked / "pkg" / "mod.py").write_text("x = 'tracked, then its directory became a link'\n")
    os.symlink(outside / "secret.py", tracked / "tracked_link.py")
    git(tracked, "init", "-q")
    git(tracked, "add", ".")
    (tracked / "untracked.py").write_text("x = 'not part of the repository'\n")
    shutil.rmtree(tracked / "pkg")
    os.symlink(outside / "dir", tracked / "pkg")
    zoo.expect(src, "clone/main.py", KEPT, "git tracked file")
    zoo.expect(src, "clone/tracked_link.py", "symlink_outside_input", "git-tracked symlink out")
    zoo.expect(src, "clone/pkg/mod.py", "symlink_outside_input", "tracked path through a directory symlink")
    linked_git = repo / "linked_git"  # `.git` itself a link to a repository outside
    linked_git.mkdir()
    (linked_git / "tool.py").write_text("x = 'a checkout whose .git is a link'\n")
    os.symlink(outside / "repo" / ".git", linked_git / ".git")
    zoo.expect(src, "linked_git/.git", "symlink_outside_input", ".git symlinked out")
    zoo.expect(src, "linked_git/tool.py", KEPT, "files of a checkout with a linked-out .git")
    worktree = repo / "worktree"  # `.git` a file naming a git directory outside
    worktree.mkdir()
    (worktree / ".git").write_text(f"gitdir: {outside / 'repo' / '.git'}\n")
    (worktree / "wt.py").write_text("x = 'a worktree of a repository outside'\n")
    zoo.expect(src, "worktree/.git", "unknown_type", "gitdir file pointing out")
    zoo.expect(src, "worktree/wt.py", KEPT, "files of a worktree of an outside repository")

    if unreadable:  # made unreadable for the run by an owner no capability of its user namespace covers
        locked = repo / "locked"
        locked.mkdir()
        (locked / "hidden.py").write_text("x = 'inside an unreadable directory'\n")
        lock(locked)
        zoo.expect(src, "locked", "unreadable_dir", "unreadable directory")
        private = write("bad/private.py", "x = 'unreadable'\n")
        lock(private)
        zoo.expect(src, "bad/private.py", "unreadable", "unreadable file")

    add_tables(tmp, zoo)
    return zoo


def add_tables(tmp: Path, zoo: Zoo) -> None:
    """JSONL, Parquet and saved-dataset inputs with bad lines, rows, pages and shards."""
    import datasets

    records = tmp / "records.jsonl"
    lines = [json.dumps({"id": "ok", "text": "def ok():\n    return 1\n", "path": "ok.py"}),
             '{"id": "cut", "text": "unterminated',
             json.dumps({"id": "notext", "title": "no text field"}),
             '{"id": "surrogate", "text": "lone \\ud800 surrogate"}',
             "[1, 2, 3]",
             "[" * 100_000 + "]" * 100_000,
             ]
    records.write_bytes("\n".join(lines).encode() + b"\n\n" + b'{"text": "bad \xff byte"}\n')
    zoo.inputs.append(records)
    for line, (outcome, kind) in enumerate([(KEPT, "good record"), ("corrupt:jsonl", "malformed JSONL"),
                                            ("missing_text", "record without text"),
                                            ("encoding:not_utf8", "lone surrogate in JSON"),
                                            ("corrupt_record", "record not an object"),
                                            ("corrupt:jsonl", "JSON nested 100000 deep"),
                                            ("corrupt:jsonl", "invalid UTF-8 in JSONL")], start=1):
        zoo.expect("records", f"records.jsonl:{line + (line == 7)}", outcome, kind)  # line 7 is blank
    zoo.expected[("records", "ok.py")] = zoo.expected.pop(("records", "records.jsonl:1"))  # kept: by its path

    rows = [{"text": f"def f{i}(x):\n    return x * {i} + {i * 7}\n" * 3, "path": f"p/{i}.py"} for i in range(30)]
    table = pa.Table.from_pylist(rows)
    pages = tmp / "pages.parquet"
    pq.write_table(table, str(pages), row_group_size=10, use_dictionary=False, compression="snappy")
    corrupt_a_page(pages, 1)
    zoo.inputs.append(pages)
    for i in (*range(10), *range(20, 30)):
        zoo.expected[("pages", f"p/{i}.py")] = KEPT
    zoo.expect("pages", "pages.parquet:rows 10-19", "corrupt:parquet", "corrupt Parquet page")
    truncated = tmp / "truncated.parquet"
    pq.write_table(table, str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    zoo.inputs.append(truncated)
    zoo.expect("truncated", "truncated.parquet", "corrupt:parquet", "truncated Parquet")

    saved = tmp / "saved"
    datasets.Dataset.from_list(rows[:20]).save_to_disk(str(saved), num_shards=2)
    shard = saved / "data-00001-of-00002.arrow"
    shard.write_bytes(shard.read_bytes()[:200] + b"\x00garbage" * 50)
    zoo.inputs.append(saved)
    for i in range(10):
        zoo.expected[("saved", f"p/{i}.py")] = KEPT
    zoo.expect("saved", "saved/data-00001-of-00002.arrow", "corrupt:arrow", "corrupt Arrow shard")
    linked = tmp / "linked_ds"
    datasets.Dataset.from_list(rows[:4]).save_to_disk(str(linked))
    arrow = linked / "data-00000-of-00001.arrow"
    datasets.Dataset.from_list([{"text": f"z = '{zoo.secret}'\n"}]).save_to_disk(str(zoo.outside / "ds"))
    arrow.unlink()
    os.symlink(zoo.outside / "ds" / "data-00000-of-00001.arrow", arrow)
    zoo.inputs.append(linked)
    zoo.expect("linked_ds", "linked_ds/data-00000-of-00001.arrow", "symlink_outside_input",
               "dataset shard symlinked out")
