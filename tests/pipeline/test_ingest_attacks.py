"""Inputs written by an attacker, or by a decade of a messy monorepo, against the ingest stage: git must run no
program a repository (or an inherited GIT_* variable) chooses and list only the input's own index; crafted index
paths, conflicted and submodule entries, sparse files claiming gigabytes, numbers Python refuses, an app folder
with a `state.json`, a corrupt `dataset_dict.json` and a very deep chain of directories each have their exact
outcome, and the plan's inputs equal what the read step accounts for.
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from data_pipeline.sources import ingest, tables
from data_pipeline.sources.files import MAX_DEPTH, FileRules, walk

KEPT = "kept"


# A child process's own peak RSS (KiB), printed by the child: ru_maxrss would report the forking pytest process's
# peak (Linux carries the old memory's high-water mark over exec: 934 MB in a full suite run).
PEAK_KIB = "int(next(line for line in open('/proc/self/status') if line.startswith('VmHWM')).split()[1])"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                          capture_output=True, text=True, env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull}).stdout


def outcomes(path: Path, fmt: str, section: dict | None = None) -> dict[str, str]:
    """{path or locator: "kept" or drop reason} through the stage's own plan and read, checking the accounting."""
    section = section or {}
    found: dict[str, str] = {}
    seen = counted = 0
    for item in ingest.plan_items(path, fmt, "src", section):
        seen += item["inputs"]
        for got in ingest.read_item(item, section):
            key = got.path
            assert key not in found, f"{key} twice"
            if isinstance(got, ingest.Skipped):
                found[key], counted = got.reason, counted + got.count
            else:
                found[key], counted = KEPT, counted + 1
    assert seen == counted, (seen, counted, found)
    return found


def plant_programs(repo: Path, marker: Path) -> None:
    """Every way a repository's own config or hooks can make git run a program: each touches `marker`."""
    touch = f"touch {marker}; echo"
    include = repo / "included.cfg"  # an included file, so an include must not be read either
    include.write_text(f'[core]\n\tfsmonitor = "{touch}"\n')
    for key, value in [("core.fsmonitor", touch), ("include.path", str(include)), ("core.hooksPath", "hooks"),
                       ("filter.evil.clean", touch), ("filter.evil.smudge", touch), ("filter.evil.process", touch),
                       ("core.sshCommand", touch), ("core.pager", touch), ("diff.external", touch)]:
        git(repo, "config", key, value)
    (repo / ".gitattributes").write_text("* filter=evil\n")
    for hooks in (repo / ".git" / "hooks", repo / "hooks"):
        hooks.mkdir(exist_ok=True)
        for hook in ("post-index-change", "post-checkout", "fsmonitor-watchman", "pre-commit"):
            (hooks / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
            (hooks / hook).chmod(0o755)


def test_a_repositorys_config_and_hooks_run_nothing(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "a.py")
    marker = tmp_path / "MARKER"
    plant_programs(repo, marker)
    subprocess.run(["git", "-C", str(repo), "status"], capture_output=True)  # the plant is real: git runs it
    assert marker.exists()
    marker.unlink()
    assert walk(repo, FileRules()).files == ["a.py"]  # the index was used: included.cfg and hooks/ are untracked
    assert outcomes(repo, "files") == {"a.py": KEPT}
    assert not marker.exists()


def test_inherited_git_variables_choose_neither_the_index_nor_a_program(tmp_path, monkeypatch):
    """As in a git hook or under `git -c`: GIT_INDEX_FILE names another repository's index, GIT_CONFIG_* set a
    core.fsmonitor program. The input's own index is listed, and nothing runs."""
    repo, other = tmp_path / "repo", tmp_path / "other"
    for path, name in ((repo, "mine.py"), (other, "theirs.py")):
        path.mkdir()
        (path / name).write_text("x = 1\n")
        git(path, "init", "-q")
        git(path, "add", name)
    marker = tmp_path / "MARKER"
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.fsmonitor")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", f"touch {marker}; echo")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.fsmonitor'='touch {marker}; echo'")
    assert outcomes(repo, "files") == {"mine.py": KEPT}
    assert not marker.exists()


def raw_index(paths: list[tuple[bytes, int, int]]) -> bytes:
    """A version-2 git index of (path, mode, stage) entries, written byte by byte: what a crafted repository ships."""
    body = b"DIRC" + struct.pack(">II", 2, len(paths))
    for path, mode, stage in sorted(paths):
        entry = struct.pack(">10I", 0, 0, 0, 0, 0, 0, mode, 0, 0, 0) + hashlib.sha1(b"blob 0\0").digest()
        entry += struct.pack(">H", (stage << 12) | min(len(path), 0xFFF)) + path
        body += entry + b"\0" * (8 - len(entry) % 8)
    return body + hashlib.sha1(body).digest()


def test_a_crafted_index_reads_nothing_outside_nor_git_internals(tmp_path):
    (tmp_path / "outside.py").write_text("SECRET = 1\n")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub").mkdir()
    (repo / "a.py").write_text("x = 1\n")
    (repo / ".git" / "config").write_text("[core]\n\tbare = false\n")
    entries = [b"a.py", b"../outside.py", str(tmp_path / "outside.py").encode(), b"sub/../../outside.py",
               b"sub//a.py", b".git/config", b"sub/.GIT/config"]
    (repo / ".git" / "index").write_bytes(raw_index([(p, 0o100644, 0) for p in entries]))
    assert outcomes(repo, "files") == {
        "a.py": KEPT, "../outside.py": "unsafe_path", str(tmp_path / "outside.py"): "unsafe_path",
        "sub/../../outside.py": "unsafe_path", "sub//a.py": "unsafe_path", ".git/config": "unsafe_path",
        "sub/.GIT/config": "unsafe_path"}


def test_a_conflicted_file_is_one_document_not_three(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "c.py").write_text("x = 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-qb", "other")
    (repo / "c.py").write_text("x = 2\n")
    git(repo, "commit", "-qam", "theirs")
    git(repo, "checkout", "-q", "main")
    (repo / "c.py").write_text("x = 3\n")
    git(repo, "commit", "-qam", "ours")
    subprocess.run(["git", "-C", str(repo), "merge", "-q", "other"], capture_output=True)
    assert git(repo, "ls-files").split() == ["c.py"] * 3  # stages 1, 2, 3 of the conflict
    assert outcomes(repo, "files") == {"c.py": KEPT}


def test_a_checked_out_submodule_is_read_and_one_not_checked_out_is_accounted(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "inner.py").write_text("y = 2\n")
    git(lib, "init", "-q")
    git(lib, "add", ".")
    git(lib, "commit", "-qm", "lib")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "top.py").write_text("x = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "top.py")
    for name in ("lib", "empty"):
        git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), name)
    git(repo, "commit", "-qm", "top")
    git(repo, "submodule", "deinit", "-q", "empty")  # an uninitialised submodule: an empty directory
    assert outcomes(repo, "files") == {"top.py": KEPT, "lib/inner.py": KEPT, ".gitmodules": "unknown_type",
                                       "empty": "submodule_not_checked_out"}


def test_a_sparse_index_claiming_gigabytes_is_not_read(tmp_path):
    """A 2 GiB `.git/index` of zeros costs no disk; read whole it takes 2 GiB of memory (a terabyte: more than any
    machine has). It is not copied: the directory is walked instead."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "a.py")
    os.truncate(repo / ".git" / "index", 2 << 30)
    code = ("from data_pipeline.sources.files import walk, FileRules; "
            f"print(walk({str(repo)!r}, FileRules()).files, {PEAK_KIB})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    files, peak_kib = proc.stdout.rsplit(" ", 1)
    assert files == "['a.py']"
    assert int(peak_kib) < 1 << 20, f"peak {peak_kib} KiB"


def test_a_jsonl_line_over_the_limit_is_one_entry_never_held_in_memory(tmp_path):
    records = tmp_path / "records.jsonl"
    with open(records, "wb") as f:
        f.write(json.dumps({"text": "a = 1\n", "path": "a.py"}).encode() + b"\n")
        f.truncate(f.tell() + tables.MAX_LINE_BYTES + 1)  # a line of zeros, sparse
        f.seek(0, os.SEEK_END)
        f.write(b"\n" + json.dumps({"text": "b = 2\n", "path": "b.py"}).encode() + b"\n")
    assert outcomes(records, "jsonl") == {"a.py": KEPT, "records.jsonl:2": "too_large", "b.py": KEPT}


def test_a_number_python_refuses_is_one_corrupt_line_and_the_next_is_read(tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text('{"text": "a = 1\\n", "path": "a.py"}\n'
                       '{"text": "b = 2\\n", "id": ' + "9" * 5000 + '}\n'  # ValueError: over 4300 digits
                       '{"text": "c = 3\\n", "path": "c.py"}\n')
    assert outcomes(records, "jsonl") == {"a.py": KEPT, "records.jsonl:2": "corrupt:jsonl", "c.py": KEPT}


def test_an_app_with_a_state_json_is_a_folder_of_files_not_a_dataset(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "state.json").write_text('{"theme": "dark"}\n')
    (app / "main.py").write_text("x = 1\n")
    assert ingest.detect_format(app) == "files"
    assert outcomes(app, "files")["main.py"] == KEPT


@pytest.mark.parametrize("declared", ["[1]", '{"splits": ["train"', '{"splits": "train"}', '{"splits": [1]}'])
def test_a_corrupt_dataset_dict_is_one_dropped_entry(tmp_path, declared):
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "dataset_dict.json").write_text(declared)
    [(path, fmt, source)] = ingest.validate_inputs({"input": str(saved)})
    assert (fmt, source) == ("hf_disk", "saved")
    assert outcomes(path, fmt) == {"saved": "corrupt:arrow"}


def make_chain(top: Path, depth: int) -> None:
    """`top/d/d/.../d/deepest.py`, `depth` directories, made through descriptors (the path outgrows PATH_MAX)."""
    fd = os.open(top, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("deepest.py", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)


def remove_chain(top: Path, depth: int) -> None:
    """Undo make_chain bottom-up (shutil.rmtree, pytest's cleanup, recurses once per level and fails)."""
    fds = [os.open(top, os.O_RDONLY)]
    for _ in range(depth):
        fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
    os.unlink("deepest.py", dir_fd=fds[-1])
    for child_fd, parent_fd in zip(fds[:0:-1], fds[-2::-1]):
        os.close(child_fd)
        os.rmdir("d", dir_fd=parent_fd)
    os.close(fds[0])


def test_a_chain_deeper_than_max_depth_is_one_too_deep_entry(tmp_path):
    root = tmp_path / "deep"
    root.mkdir()
    (root / "top.py").write_text("x = 1\n")
    make_chain(root, MAX_DEPTH + 5)
    try:
        listing = walk(root, FileRules())
    finally:
        remove_chain(root, MAX_DEPTH + 5)
    assert listing.files == ["top.py"]
    assert [(s.path, s.reason) for s in listing.skipped] == [("d/" * MAX_DEPTH + "d", "too_deep")]


def test_a_table_changed_between_plan_and_read_still_adds_up(tmp_path):
    """A file still being written, or edited between a killed run and its resume: the read step gives exactly the
    entries the plan counted (the rest of a grown file is the newer file's), one `changed_since_plan` for any lacking."""
    folder = tmp_path / "tables"
    folder.mkdir()
    rows = "text,path\na = 1,a.py\nb = 2,b.py\n"
    (folder / "grows.csv").write_text(rows)
    (folder / "shrinks.csv").write_text(rows)
    (folder / "split.jsonl").write_text('{"text": "a = 1", "path": "j1.py"}\n{"text": "b = 2", "path": "j2.py"}\n')
    items = ingest.plan_items(folder, "hf_files", "src", {})
    (folder / "grows.csv").write_text(rows + "c = 3,c.py\n")
    (folder / "shrinks.csv").write_text("text,path\na = 1,a.py\n")
    (folder / "split.jsonl").write_text('{"text":"a","path":"j1.py"}\n{"text":"b","path":"j2.py"}\n{"text":"c"}\n\n')
    got = {}
    for item in items:
        entries = list(ingest.read_item(item, {}))
        assert sum(e.count if isinstance(e, ingest.Skipped) else 1 for e in entries) == item["inputs"] == 2
        got.update({e.path: e.reason if isinstance(e, ingest.Skipped) else KEPT for e in entries})
    assert got == {"a.py": KEPT, "b.py": KEPT, "shrinks.csv:rows": "changed_since_plan", "j1.py": KEPT, "j2.py": KEPT}


def test_a_csv_of_code_is_read_row_by_row(tmp_path):
    """CSV files were read whole by pyarrow, which past its first 1 MB block refused any quoted cell holding a newline
    (every CSV of code: the whole file was dropped as corrupt), and a bad byte dropped the whole file too. Now: each
    row is its document, a row with bytes that are not UTF-8 is the one dropped, memory stays one row."""
    body = "def f(x):\n    return x  # \"quoted\", with a comma\n" * 2000  # ~100 KB per cell, ~3 MB in all
    table = tmp_path / "code.csv"  # CSV comes in a folder of data files (ingest.format=hf_files)
    with table.open("wb") as f:
        f.write(b"text,path,stars\n")
        for i in range(30):
            f.write(('"' + body.replace('"', '""') + f'",src/m{i}.py,{i}\n').encode())
        f.write(b'"caf\xe9 = 1",latin1.py,0\n')  # one row in Latin-1
        f.write(b"short row\n")  # fewer cells than the header: no path, named by its row
    got = outcomes(tmp_path, "hf_files")
    assert got == {**{f"src/m{i}.py": KEPT for i in range(30)}, "code.csv:30": "encoding:not_utf8", "code.csv:31": KEPT}
    docs = [d for item in ingest.plan_items(tmp_path, "hf_files", "src", {}) for d in ingest.read_item(item, {})]
    assert docs[0].text == body and docs[0].kind == "code" and docs[0].lang == "python"


def test_a_csv_with_an_endless_line_is_dropped_without_reading_it_whole(tmp_path):
    table = tmp_path / "sparse.csv"
    with table.open("wb") as f:
        f.write(b"text,path\n")
        f.truncate(8 << 30)  # 8 GiB of zeros and no newline: one line, never held in memory
    assert outcomes(tmp_path, "hf_files") == {"sparse.csv": "corrupt:csv"}
