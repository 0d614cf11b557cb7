from evals.report import render_markdown, table_rows, write_report

REPORT = {
    "model": "/m", "limit": 2, "device": "cpu", "dtype": "float32",
    "tasks": {"humaneval": {"problems": 2, "pass@1": 0.5, "pass@10": None},
              "humaneval_infill": {"tasks": 2, "psm": {"pass@1": 0.25, "exact_match": 0.0}},
              "heldout_fim": {"tasks": 3, "exact_match": 0.0, "edit_similarity": 0.4},
              "perplexity": {"windows": 1, "perplexity": 12.5, "bits_per_byte": 1.25, "loss": 2.5}},
    "timing_s": {"humaneval": 1.0}, "generation": {"new_tokens": 10, "seconds": 1.0, "tokens_per_s": 10.0},
    "published": {"name": "Refact-1.6B (published)", "humaneval": {"pass@1": 32.0, "pass@10": 53.0}},
}


def test_markdown_puts_published_numbers_beside_ours(tmp_path):
    md = render_markdown(REPORT)
    assert "| humaneval | pass@1 | 50.0 | 32.0 |" in md
    assert "| humaneval | pass@10 | — | 53.0 |" in md
    assert "| humaneval_infill | psm/pass@1 | 25.0 | — |" in md
    assert "| heldout_fim | edit_similarity | 40.0 | — |" in md
    assert "| perplexity | bits_per_byte | 1.25 | — |" in md
    assert "Smoke run" in md
    assert len(table_rows(REPORT["tasks"])) == 9
    json_path, md_path = write_report(REPORT, tmp_path / "r" / "out.json")
    assert json_path.is_file() and md_path.read_text() == md
