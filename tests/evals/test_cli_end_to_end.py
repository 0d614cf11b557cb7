"""refact-eval on a tiny exported model: every task runs and the report is complete (the scores can be anything)."""
import json
import shutil
import subprocess

import pytest

ALL_TASKS = ["humaneval", "humaneval_chat", "humaneval_infill", "heldout_fim", "perplexity"]


def test_refact_eval_writes_a_complete_report(tiny_model_dir, pipeline_dir, tmp_path):
    exe = shutil.which("refact-eval")
    assert exe, "refact-eval is not installed: pip install -e . (pyproject.toml [project.scripts])"
    out = tmp_path / "results" / "tiny.json"
    cmd = [exe, f"model={tiny_model_dir}", f"data={pipeline_dir}", f"tasks=[{','.join(ALL_TASKS)}]", f"out={out}",
           "limit=3", "cpu_threads=1", "humaneval.max_new_tokens=24", "humaneval_chat.max_new_tokens=24",
           "heldout_fim.max_new_tokens=12", "heldout_fim.samples_per_document=2", "humaneval_infill.orders=[psm,spm]",
           "sandbox.workers=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    report = json.loads(out.read_text())
    assert list(report["tasks"]) == ALL_TASKS
    he = report["tasks"]["humaneval"]
    assert he["problems"] == 3 and 0.0 <= he["pass@1"] <= 1.0 and he["pass@10"] is None
    assert 0.0 <= report["tasks"]["humaneval_chat"]["pass@1"] <= 1.0
    infill = report["tasks"]["humaneval_infill"]
    assert infill["tasks_built"] == 1033 and infill["tasks"] == 3
    for order in ("psm", "spm"):
        assert set(infill[order]) == {"pass@1", "exact_match"}
    fim = report["tasks"]["heldout_fim"]
    assert fim["tasks"] + fim["skipped_no_middle"] == 2 * fim["documents"] and 0.0 <= fim["edit_similarity"] <= 1.0
    ppl = report["tasks"]["perplexity"]
    assert ppl["tokens"] > 0 and ppl["bytes"] > 0 and ppl["perplexity"] > 1.0 and ppl["bits_per_byte"] > 0
    assert report["generation"]["new_tokens"] > 0 and report["sandbox_isolation"]["uid"] is not None

    md = out.with_suffix(".md").read_text()
    assert md == proc.stdout.rstrip("\n") + "\n" or md.strip() in proc.stdout
    for row in ("| humaneval | pass@1 |", "| humaneval | pass@100 |", "| humaneval_chat | pass@1 |",
                "| humaneval_infill | psm/pass@1 |", "| humaneval_infill | spm/exact_match |",
                "| heldout_fim | exact_match |", "| heldout_fim | edit_similarity |",
                "| perplexity | perplexity |", "| perplexity | bits_per_byte |"):
        assert row in md, row
    assert "| humaneval | pass@1 |" in md and "| 32.0 |" in md and "| 38.4 |" in md
    samples = out.parent / "tiny_samples"
    assert {p.name for p in samples.iterdir()} == {
        "humaneval_samples.jsonl", "humaneval_chat_samples.jsonl", "humaneval_infill_psm_samples.jsonl",
        "humaneval_infill_spm_samples.jsonl", "heldout_fim_samples.jsonl"}


def test_missing_data_and_unknown_tasks_are_named_before_loading_anything(tmp_path):
    from evals.cli import compose_config, run

    cfg = compose_config([f"model={tmp_path / 'absent'}", "tasks=[humaneval,perplexity]", f"out={tmp_path / 'r.json'}"])
    with pytest.raises(ValueError, match=r"\['perplexity'\] need data=DIR"):
        run(cfg)
    cfg = compose_config([f"model={tmp_path / 'absent'}", "tasks=[mbpp]"])
    with pytest.raises(ValueError, match="unknown \\['mbpp'\\]"):
        run(cfg)


def test_presets_set_the_sampling_protocol():
    from evals.cli import compose_config

    greedy = compose_config(["model=x"])
    assert greedy.humaneval.temperature == 0.0 and greedy.humaneval.num_samples == 1
    sampled = compose_config(["model=x", "preset=sampled"])
    assert sampled.humaneval.temperature == 0.8 and sampled.humaneval.num_samples == 200
    assert sampled.generation.top_p == 0.95
