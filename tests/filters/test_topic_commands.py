"""The commands of docs/filters.md: build the labelled set (slow: fetches packages), train, and measure."""
import argparse
import importlib.util
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from data_pipeline.filters.topic_model import LogisticTopicScorer
from tools.topic_eval.dataset import Example
from tools.topic_eval.train import main as train_main

ROOT = Path(__file__).resolve().parents[2]
PROSE = (Path(__file__).parent / "data" / "prose_public_domain.txt").read_text().strip().split("\n\n")
CS = [argparse.__doc__, subprocess.__doc__, json.__doc__, json.dumps.__doc__, subprocess.run.__doc__,
      json.loads.__doc__]


def load_bench():
    spec = importlib.util.spec_from_file_location("topic_classifier_bench", ROOT / "bench" / "topic_classifier.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tiny_set(data: Path) -> None:
    """A tiny labelled set in the build script's layout, from real text (stdlib docstrings, public-domain prose)."""
    data.mkdir()
    rows = {"train": [Example(t, 1, f"cs{i % 2}", f"cs{i}", "train") for i, t in enumerate(CS)]
            + [Example(t, 0, f"prose{i % 2}", f"prose{i}", "train") for i, t in enumerate(PROSE)]}
    rows["val"] = [Example(CS[0], 1, "cs0", "v1", "val"), Example(PROSE[0], 0, "prose0", "v0", "val")]
    rows["test"] = rows["val"]
    for split, examples in rows.items():
        (data / f"{split}.jsonl").write_text("".join(json.dumps(asdict(e)) + "\n" for e in examples))
    (data / "summary.json").write_text(json.dumps({"examples": {s: len(r) for s, r in rows.items()}}))


def test_train_then_bench_commands(tmp_path, capsys):
    data, model = tmp_path / "set", tmp_path / "model.json"
    write_tiny_set(data)
    assert train_main(["--data", str(data), "--out", str(model), "--min-groups", "1", "--max-features", "300"]) == 0
    scorer = LogisticTopicScorer.load(model)
    assert scorer.meta["threshold"]["val_precision"] == 1.0
    capsys.readouterr()
    assert load_bench().main(["--data", str(data), "--scorer-path", str(model),
                              "--threshold", str(scorer.meta["threshold"]["value"])]) == 0
    out = capsys.readouterr().out
    assert "precision 1.000  recall 1.000" in out


@pytest.mark.slow
def test_build_train_measure_the_real_set(tmp_path):
    """The whole recipe of docs/filters.md (needs apt-get and pip to reach their registries; several minutes)."""
    out, model = tmp_path / "topic_eval", tmp_path / "model.json"
    run = lambda *cmd: subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True, capture_output=True, text=True)
    run("scripts/build_topic_eval_set.py", "--out", str(out), "--cache", str(tmp_path / "cache"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["examples"]["test"] > 5000
    run("-m", "tools.topic_eval.train", "--data", str(out), "--out", str(model))
    threshold = LogisticTopicScorer.load(model).meta["threshold"]["value"]
    report = run("bench/topic_classifier.py", "--data", str(out), "--scorer-path", str(model),
                 "--threshold", str(threshold)).stdout
    precision = float(report.split(f"threshold {threshold}: precision ")[1].split()[0])
    assert precision >= 0.9, report
