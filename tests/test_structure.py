"""scripts/check_structure.py: on small planted trees (a cycle, a long file, a model import, a broken doc path), then on
this repository, which must pass: no import cycle, no code file over 450 lines, the model package importing only
itself, and docs naming only files and modules that exist."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_structure.py"


def load_script():
    spec = importlib.util.spec_from_file_location("check_structure", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


check = load_script()


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


CLEAN = {
    "data_pipeline/__init__.py": "",
    "data_pipeline/a.py": "from data_pipeline import b\nimport json\n",
    "data_pipeline/b.py": "X = 1\n",
    "refact_train/__init__.py": "",
    "refact_train/model/__init__.py": "from .layers import Block\n",
    "refact_train/model/layers.py": "import torch\n\nclass Block:\n    pass\n",
    "tests/test_a.py": "def test():\n    pass\n",
    "docs/design.md": "See `data_pipeline/a.py`, [the layers](../refact_train/model/layers.py) and "
                      "`data_pipeline.b.X`. Outputs go to `runs/x/out.json`.\n",
}


def test_clean_tree_passes_and_counts(tmp_path, capsys):
    root = write(tmp_path, CLEAN)
    report = check.build_report(root)
    assert not report.failed, report
    assert report.sizes["data_pipeline"] == [3, 3, 3]  # files, lines, non-blank lines
    assert report.sizes["refact_train/model"] == [2, 5, 4] and report.sizes["refact_train"] == [1, 0, 0]
    assert report.sizes["tests"] == [1, 2, 2]
    assert check.main(["--root", str(root)]) == 0
    assert "import cycles: 0" in capsys.readouterr().out


def test_planted_cycle_through_a_function_level_and_a_relative_import(tmp_path, capsys):
    root = write(tmp_path, {**CLEAN,
                            "data_pipeline/b.py": "def f():\n    from data_pipeline.c import g\n    return g\n",
                            "data_pipeline/c.py": "from . import a\n\ndef g():\n    return a\n"})
    report = check.build_report(root)
    assert report.cycles == [["data_pipeline.a", "data_pipeline.b", "data_pipeline.c", "data_pipeline.a"]]
    assert [(i.source, i.target) for i in report.function_imports] == [("data_pipeline.b", "data_pipeline.c")]
    assert check.main(["--root", str(root)]) == 1
    assert "data_pipeline.a -> data_pipeline.b -> data_pipeline.c -> data_pipeline.a" in capsys.readouterr().out


def test_import_module_with_a_literal_name_is_an_edge(tmp_path):
    code = "import importlib\nM = importlib.import_module('data_pipeline.a')\n"
    root = write(tmp_path, {**CLEAN, "data_pipeline/b.py": code})
    assert check.build_report(root).cycles == [["data_pipeline.a", "data_pipeline.b", "data_pipeline.a"]]


def test_two_separate_cycles_are_both_reported(tmp_path):
    root = write(tmp_path, {**CLEAN, "data_pipeline/b.py": "import data_pipeline.a\n",
                            "refact_train/x.py": "from refact_train.y import Y\nX = 1\n",
                            "refact_train/y.py": "from refact_train.x import X\nY = 2\n"})
    assert [c[0] for c in check.build_report(root).cycles] == ["data_pipeline.a", "refact_train.x"]


def test_long_file_and_model_import_fail(tmp_path):
    root = write(tmp_path, {**CLEAN,
                            "data_pipeline/b.py": "X = 1\n" * 451,
                            "refact_train/model/layers.py": "import torch\nfrom refact_train import paths\n"
                                                            "from data_pipeline.b import X\n",
                            "refact_train/paths.py": ""})
    report = check.build_report(root)
    assert report.long_files == [("data_pipeline/b.py", 451)]
    assert [(i.source, i.target) for i in report.layering_violations] == [
        ("refact_train.model.layers", "refact_train.paths"), ("refact_train.model.layers", "data_pipeline.b")]
    assert not report.cycles and report.failed


def test_data_pipeline_over_its_file_cap_fails(tmp_path):
    files = {f"data_pipeline/m{i}.py": "X = 1\n" for i in range(check.MAX_FILES["data_pipeline"] + 1)}
    report = check.build_report(write(tmp_path, {**CLEAN, **files}))
    assert report.crowded == [f"data_pipeline: {report.sizes['data_pipeline'][0]} files (at most 38)"] and report.failed


def test_library_importing_a_tool_or_the_pipeline_importing_the_trainer_fails(tmp_path):
    root = write(tmp_path, {**CLEAN, "data_pipeline/b.py": "import refact_train\nfrom tools import helper\n",
                            "tools/__init__.py": "", "tools/helper.py": "from data_pipeline import a\n"})
    assert [(i.source, i.target) for i in check.build_report(root).layering_violations] == [
        ("data_pipeline.b", "refact_train"), ("data_pipeline.b", "tools.helper")]


def test_docs_naming_missing_files_modules_or_outside_paths_fail(tmp_path):
    root = write(tmp_path, {**CLEAN, "README.md": "Design: `../shared/DESIGN.md`; run `python -m data_pipeline.gone` "
                                                  "or `data_pipeline/gone.py`; see [x](docs/nothere.md) and "
                                                  "`data_pipeline.b.Missing`.\n"})
    report = check.build_report(root)
    assert sorted(name for _doc, name in report.missing_doc_paths) == [
        "../shared/DESIGN.md", "data_pipeline.b.Missing", "data_pipeline.gone", "data_pipeline/gone.py",
        "docs/nothere.md"]


def test_code_citing_a_missing_doc_fails(tmp_path):
    root = write(tmp_path, {**CLEAN,
                            "data_pipeline/c.py": '"""The shard format (api.md); the design (docs/design.md)."""\n',
                            "bench/speed.py": "# results in RESULTS.md\n", "bench/RESULTS.md": "",
                            "scripts/report.py": "# writes OUT.md\n"})
    assert check.build_report(root).missing_doc_paths == [("data_pipeline/c.py", "api.md")]


def test_this_repository_passes():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "total (without tests)" in done.stdout


def test_python_imports_in_the_docs_import():
    """Every `import` / `from ... import` line of a ```python block in README.md and docs/ names what exists."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    statements = [line.split("#")[0].strip() for doc in docs
                  for block in re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
                  for line in block.splitlines() if re.match(r"(from \S+ import |import )[^(]*$", line)]
    assert len(statements) > 20
    code = "\n".join(statements)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


def test_test_modules_have_unique_names():
    """Test folders are not packages: pytest imports each file by its bare name, so two files of one name stop the
    whole run at collection ("import file mismatch"), and a second helpers module of one name would be the first's."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name != "conftest.py" and not (path.parent / "__init__.py").exists():
            seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert not {name: paths for name, paths in seen.items() if len(paths) > 1}
