import pytest

from data_pipeline.fim import FimConfig
from data_pipeline.heldout_fim import build_heldout_tasks, edit_similarity, normalized_exact_match, trim_to_budget
from data_pipeline.records import Document
from data_pipeline.tokenizer import train_bpe


def test_edit_similarity_and_exact_match():
    assert edit_similarity("abc", "abc") == 1.0 and edit_similarity("", "abc") == 0.0
    assert edit_similarity("abcd", "abxd") == pytest.approx(0.75)  # one substitution in four
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert edit_similarity("", "") == 1.0 and edit_similarity("abc", "") == 0.0
    assert normalized_exact_match("x = 1\n", "x = 1") and not normalized_exact_match(" x = 1", "x = 1")


def _docs():
    text = "".join(f"def f{i}(x):\n    y = x * {i}\n    return y + {i}\n\n" for i in range(20))
    return [Document(id=f"d{k}", text=text[k * 7:], kind="code", lang="python", source="t", path=f"f{k}.py")
            for k in range(3)]


def test_tasks_are_line_aware_deterministic_and_reconstruct_the_file():
    docs = _docs()
    fim = FimConfig(mode="finetune")
    tasks, skipped = build_heldout_tasks(docs, fim, seed=7, samples_per_document=3)
    again, _ = build_heldout_tasks(docs, fim, seed=7, samples_per_document=3)
    assert tasks == again and len(tasks) + skipped == 9
    texts = {d.id: d.text for d in docs}
    for t in tasks:
        assert t.prefix + t.middle + t.suffix == texts[t.task_id.split("#")[0]]
        assert t.splitter in ("inside_row", "to_end_of_row", "multi_row")
    other, _ = build_heldout_tasks(docs, fim, seed=8, samples_per_document=3)
    assert [t.middle for t in other] != [t.middle for t in tasks]


def test_trim_keeps_the_lines_nearest_the_middle():
    tok = train_bpe(["line number %d\n" % i for i in range(200)], vocab_size=300, min_frequency=1)
    prefix = "".join(f"line number {i}\n" for i in range(100)) + "partial"
    suffix = "".join(f"line number {i}\n" for i in range(100, 200))
    p, s = trim_to_budget(prefix, suffix, tok, budget=60)
    assert prefix.endswith(p) and suffix.startswith(s) and p.endswith("line number 99\npartial")
    assert s.startswith("line number 100\n") and len(tok.encode(p)) + len(tok.encode(s)) <= 60
    assert trim_to_budget("a\n", "b\n", tok, budget=1000) == ("a\n", "b\n")


def test_a_damaged_heldout_file_is_named(tmp_path):
    from data_pipeline.heldout_fim import load_heldout_documents
    (tmp_path / "heldout").mkdir()
    (tmp_path / "heldout" / "heldout-00000.parquet").write_bytes(b"PAR1 cut short")  # pyarrow named no file before
    with pytest.raises(ValueError, match=r"heldout-00000\.parquet: not a readable held-out record file"):
        load_heldout_documents(tmp_path, ["code"])
