"""`bash scripts/main_job.sh` end to end at a reduced size, through the same script (environment overrides)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = 6


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_main_job_small(tmp_path):
    work = tmp_path / "main jöb's $x"  # a path that breaks unquoted Hydra values
    env = dict(os.environ, PYTHON=sys.executable, REFACT_DEMO_DIR=str(work), REFACT_DEMO_SKIP_SETUP="1",
               REFACT_DEMO_STEPS=str(STEPS), REFACT_DEMO_FILES="20", REFACT_DEMO_DOCS="15",
               REFACT_DEMO_FOREIGN="2", REFACT_DEMO_LEAKED="2", REFACT_DEMO_HOLDOUT="2", REFACT_DEMO_EVAL_LIMIT="2",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run(["bash", str(REPO / "scripts" / "main_job.sh")], env=env, capture_output=True, text=True,
                          timeout=1700)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout

    # the corpus's contamination and non-English files were all dropped, and the job said so
    assert "HumanEval files: 2 of 2 dropped" in out and "non-English files: 2 of 2 dropped" in out
    stats = json.loads((work / "data" / "stats.json").read_text())
    decontam = next(s for s in stats["stages"] if s["stage"] == "decontam")
    assert decontam["dropped"] == {"contains:humaneval": 2}
    assert (work / "data" / "tokenizer" / "tokenizer.json").is_file()
    assert stats["shards"]["counts"]["valid"]["documents"] == 2

    # training: every step logged, Lion, early dropout on at the start and off at the end, loss falling
    records = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in records if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    # validation on the held-out split: every STEPS/10 steps (here every step) and at step 0, the best one kept
    val = {r["step"]: r for r in records if "val_loss" in r}
    assert sorted(val) == list(range(0, STEPS + 1))
    assert all(v["val_loss"] > 0 and v["val_bits_per_byte"] > 0 and v["val_tokens"] > 0 for v in val.values())
    assert val[STEPS]["val_loss"] < val[0]["val_loss"]
    best = json.loads((work / "run" / "best.json").read_text())
    assert best["val_loss"] == min(v["val_loss"] for s, v in val.items() if s > 0)
    assert (work / "run" / "best" / "COMPLETE.json").is_file() and "validation loss: step 0" in out
    assert rows[0]["dropout"] > 0 and rows[-1]["dropout"] == 0
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert json.loads(json.dumps(rows[0]))["lr"] > 0
    for name in ("dashboard", "loss", "lr", "dropout", "tokens_per_s"):
        png = work / "run" / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"dashboard: {work / 'run' / 'plots' / 'dashboard.png'}" in out

    # export loaded by transformers, FIM generation, evals
    assert (work / "hf" / "config.json").is_file() and "transformers loaded" in out
    results = json.loads((work / "eval" / "results.json").read_text())
    assert results["tasks"]["heldout_fim"]["documents"] == 2
    assert 0.0 <= results["tasks"]["heldout_fim"]["exact_match"] <= 1.0
    assert results["tasks"]["perplexity"]["loss"] > 0
    assert "== key numbers ==" in out and "training loss:" in out and "perplexity:" in out


def test_main_job_refuses_a_foreign_work_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    env = dict(os.environ, REFACT_DEMO_DIR=str(tmp_path), REFACT_DEMO_SKIP_SETUP="1")
    done = subprocess.run(["bash", str(REPO / "scripts" / "main_job.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "not a main-job directory" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_finetune_repo_usage_errors(tmp_path):
    script = str(REPO / "scripts" / "finetune_repo.sh")
    done = subprocess.run(["bash", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage:" in done.stderr
    env = dict(os.environ, REFACT_FT_MODE="half", REFACT_FT_DIR=str(tmp_path / "ft"))
    done = subprocess.run(["bash", script, str(tmp_path), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "REFACT_FT_MODE=half" in done.stderr
