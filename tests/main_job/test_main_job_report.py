"""scripts/main_job_report.py: the numbers the main job prints."""
import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "main_job_report", Path(__file__).resolve().parents[2] / "scripts" / "main_job_report.py")
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def test_loss_windows_are_means_over_equal_slices():
    losses = [(s, float(10 - s)) for s in range(1, 11)]
    assert report.loss_windows(losses, windows=5) == [(1, 2, 8.5), (3, 4, 6.5), (5, 6, 4.5), (7, 8, 2.5), (9, 10, 0.5)]
    assert report.loss_windows(losses[:3], windows=5) == [(1, 1, 9.0), (2, 2, 8.0), (3, 3, 7.0)]


def test_read_losses_keeps_the_last_record_of_a_repeated_step(tmp_path):
    rows = [{"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.0}, {"step": 2, "loss": 3.5}, {"step": 3, "lr": 0.1}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert report.read_losses(tmp_path) == [(1, 5.0), (2, 3.5)]


def test_missing_metrics_names_the_file(tmp_path):
    with pytest.raises(SystemExit, match="metrics.jsonl not found"):
        report.read_losses(tmp_path)
