#!/usr/bin/env python
"""Structure report and checks of the repository (docs/design.md, "Layering").

    python scripts/check_structure.py [--root DIR]

Prints per folder the files and the lines of code (.py, .sh, .sbatch), tests apart. Exits 1 on an import cycle (read
with `ast`: imports inside functions and `importlib.import_module("literal")` count), a code file over 450 lines, a
layering violation, data_pipeline over 38 files (issue 13's cap), or a path, link, module or Markdown file named in
the docs or the code that does not exist.
"""
from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

# Rows of the size report, most specific first: a file counts in the first folder that holds it.
GROUPS = ("refact_train/model", "data_pipeline", "refact_train", "evals", "tools", "scripts", "bench", "launch")
PACKAGES = ("data_pipeline", "refact_train", "evals", "tools")  # importable: the nodes of the import graph
MODEL = "refact_train.model"
# Which packages each package may import (docs/design.md, "Layering"); the model package only itself (MODEL).
MAY_IMPORT = {"data_pipeline": {"data_pipeline"}, "refact_train": {"refact_train", "data_pipeline"},
              "evals": {"evals", "refact_train", "data_pipeline"}, "tools": set(PACKAGES)}
CODE_SUFFIXES = (".py", ".sh", ".sbatch")
MAX_LINES = 450
MAX_FILES = {"data_pipeline": 38}  # issue 13: the pipeline had grown to 54 files
# Markdown names in these are citations of docs (scripts/ and tests/ mostly name files they write).
CITING_DOCS = ("data_pipeline", "refact_train", "evals", "tools", "bench", "configs", "launch", "setup.py",
               "pyproject.toml")
PATH_TOKEN = re.compile(r"(?<![\w./~-])((?:\.\./)*[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+/?)")
MODULE_TOKEN = re.compile(r"(?<![\w./-])((?:%s)(?:\.[A-Za-z_]\w*)+)" % "|".join(PACKAGES))
LINK = re.compile(r"\]\(([^)\s]+)\)")
MD_TOKEN = re.compile(r"(?<![\w./-])([A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md)\b")
FILE_SUFFIXES = (".md", ".py", ".sh", ".yaml", ".json", ".toml", ".txt")  # `evals.md` is a file, not a module


@dataclass
class Import:
    source: str
    target: str
    line: int
    in_function: bool


@dataclass
class Report:
    sizes: dict[str, list[int]] = field(default_factory=dict)  # group -> [files, lines, non-blank]
    long_files: list[tuple[str, int]] = field(default_factory=list)
    cycles: list[list[str]] = field(default_factory=list)
    layering_violations: list[Import] = field(default_factory=list)
    function_imports: list[Import] = field(default_factory=list)
    missing_doc_paths: list[tuple[str, str]] = field(default_factory=list)

    @property
    def crowded(self) -> list[str]:
        return [f"{group}: {self.sizes[group][0]} files (at most {cap})" for group, cap in MAX_FILES.items()
                if self.sizes.get(group, [0])[0] > cap]

    @property
    def failed(self) -> bool:
        return bool(self.long_files or self.crowded or self.cycles or self.layering_violations
                    or self.missing_doc_paths)


def walk_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]


def measure(root: Path, report: Report) -> None:
    report.sizes = {g: [0, 0, 0] for g in (*GROUPS, "tests")}
    for top in sorted({g.split("/")[0] for g in GROUPS} | {"tests"}):
        for path in walk_files(root / top):
            rel = path.relative_to(root).as_posix()
            size = report.sizes[next((g for g in GROUPS if rel.startswith(g + "/")), "tests")]
            size[0] += 1
            if path.suffix in CODE_SUFFIXES:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
                size[1] += len(lines)
                size[2] += sum(1 for line in lines if line.strip())
                if len(lines) > MAX_LINES:
                    report.long_files.append((rel, len(lines)))


def find_modules(root: Path) -> dict[str, Path]:
    modules = {}
    for pkg in PACKAGES:
        for path in walk_files(root / pkg):
            if path.suffix == ".py":
                parts = list(path.relative_to(root).with_suffix("").parts)
                modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The most specific project module a dotted name lies in, or None outside the project."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[tuple[str, int], Import] = {}

    def add(name: str, node: ast.AST, in_function: bool) -> None:
        target = resolve(name, modules)
        if target is not None and target != module:
            found.setdefault((target, node.lineno), Import(module, target, node.lineno, in_function))

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, in_function)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from pkg import mod` imports the module pkg.mod when there is one
                add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base, node, in_function)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            add(node.args[0].value, node, in_function)
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return list(found.values())


def check_imports(root: Path, report: Report, modules: dict[str, Path]) -> None:
    graph = nx.DiGraph()
    graph.add_nodes_from(sorted(modules))
    for module in sorted(modules):
        for imp in imports_of(module, modules[module], modules):
            graph.add_edge(module, imp.target)
            if imp.in_function:
                report.function_imports.append(imp)
            if ((module + ".").startswith(MODEL + ".") and not (imp.target + ".").startswith(MODEL + ".")
                    or imp.target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]]):
                report.layering_violations.append(imp)
    for members in nx.strongly_connected_components(graph):
        if len(members) > 1:  # a shortest cycle through the component's first module
            start = min(members)
            inner = graph.subgraph(members)
            back = min((nx.shortest_path(inner, child, start) for child in sorted(inner.successors(start))), key=len)
            report.cycles.append([start, *back])
    report.cycles.sort()


def anchors(doc: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", doc.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def module_name_exists(name: str, modules: dict[str, Path]) -> bool:
    """`pkg.mod`, or `pkg.mod.attr` with `attr` defined or imported at the top of pkg/mod.py."""
    if name.startswith("refact_train.configs"):  # configs/, installed under this name (setup.py)
        return True
    module = resolve(name, modules)
    if module is None or name == module:
        return module is not None
    attr = name[len(module) + 1:].split(".")[0]
    for node in ast.parse(modules[module].read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == attr:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and attr in {
                t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)}:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and attr in {(a.asname or a.name) for a in node.names}:
            return True
    return False


def inside(root: Path, path: Path) -> bool:
    resolved = path.resolve()
    return resolved.exists() and resolved.is_relative_to(root)


def check_docs(root: Path, report: Report, modules: dict[str, Path]) -> None:
    """README.md, docs/ and bench/*.md name only files, folders, anchors and modules that exist, nothing outside
    the repository; library code, configs and benchmarks name only Markdown files that exist."""
    top = top_level_entries(root)
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md")), *sorted((root / "bench").glob("*.md"))]:
        if not doc.is_file():
            continue
        text, missing = doc.read_text(encoding="utf-8"), set()
        for name in (n.rstrip(".") for n in PATH_TOKEN.findall(text)):
            looks_like_path = "." in name.rsplit("/", 1)[-1] or name.endswith("/") or name.count("/") > 1  # not docs/s
            if (not inside(root, doc.parent / name) if name.startswith("../")
                    else looks_like_path and name.split("/")[0] in top and not (root / name).exists()):
                missing.add(name)
        for link in LINK.findall(text):
            target, _, anchor = link.partition("#")
            if "://" in link or link.startswith("mailto:"):
                continue
            if (target and not inside(root, doc.parent / target)) or (
                    anchor and target.endswith(".md") and anchor not in anchors(doc.parent / target)):
                missing.add(link)
        missing.update(m for m in MODULE_TOKEN.findall(text)
                       if not m.endswith(FILE_SUFFIXES) and not module_name_exists(m, modules))
        report.missing_doc_paths += [(doc.relative_to(root).as_posix(), name) for name in sorted(missing)]
    for entry in CITING_DOCS:
        for path in [root / entry] if (root / entry).is_file() else walk_files(root / entry):
            if path.suffix not in (*CODE_SUFFIXES, ".yaml", ".toml"):
                continue
            for name in sorted(set(MD_TOKEN.findall(path.read_text(encoding="utf-8", errors="replace")))):
                if ("/" in name and name.split("/")[0] in top and not (root / name).exists()) or (
                        "/" not in name and not any((d / name).exists() for d in (root, root / "docs", path.parent))):
                    report.missing_doc_paths.append((path.relative_to(root).as_posix(), name))


def top_level_entries(root: Path) -> set[str]:
    """The repository's own top-level files and folders: what git tracks (run outputs such as runs/ are not the
    repository's, so a doc that names an example output path is not checked against a local run), or every entry
    outside a checkout."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files"], capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout:
        return {line.split("/")[0] for line in listed.stdout.splitlines()}
    return {p.name for p in root.iterdir() if not p.name.startswith(".")}


def build_report(root: Path) -> Report:
    report, modules = Report(), find_modules(root)
    measure(root, report)
    check_imports(root, report, modules)
    check_docs(root, report, modules)
    return report


def print_report(report: Report) -> None:
    row = "{:<22}{:>7}{:>9}{:>11}"
    print(row.format("folder", "files", "lines", "non-blank"))
    for group in GROUPS:
        print(row.format("refact_train (rest)" if group == "refact_train" else group, *report.sizes[group]))
    total = [sum(report.sizes[g][i] for g in GROUPS) for i in range(3)]
    print(row.format("total (without tests)", *total))
    print(row.format("tests", *report.sizes["tests"]))
    sections = [
        (f"code files over {MAX_LINES} lines", [f"{rel}: {n} lines" for rel, n in report.long_files]),
        ("folders over their file cap", report.crowded),
        ("import cycles", [" -> ".join(c) for c in report.cycles]),
        ("layering violations (model/ imports only itself, data_pipeline neither refact_train nor evals, no tools)",
         [f"{i.source} (line {i.line}) imports {i.target}" for i in report.layering_violations]),
        ("function-level imports of project modules (information)",
         [f"{i.source}:{i.line} -> {i.target}" for i in report.function_imports]),
        ("paths, links and modules named in README.md, docs/, bench/*.md, and docs named in code, that do not exist",
         [f"{where}: `{name}`" for where, name in report.missing_doc_paths]),
    ]
    for title, lines in sections:
        print(f"\n{title}: {len(lines)}")
        for line in lines:
            print("  " + line)
    print("\nFAILED" if report.failed else "\nOK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    report = build_report(parser.parse_args(argv).root.resolve())
    print_report(report)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
