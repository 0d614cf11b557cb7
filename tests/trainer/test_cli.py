"""The commands docs/training.md shows: `refact-train experiment=tiny_cpu ...` and `refact-train plot RUN_DIR`."""
import shutil
import subprocess

import pytest

from helpers import cli_env, metrics


@pytest.mark.skipif(shutil.which("refact-train") is None, reason="refact-train not installed (pip install -e .)")
def test_refact_train_tiny_cpu_experiment_and_plot(corpus_dir, tmp_path):
    run = tmp_path / "run"
    cmd = ["refact-train", "experiment=tiny_cpu", f"data.path={corpus_dir}", f"run_dir={run}", "train.max_steps=2",
           "checkpoint.every=1", "resume=auto", "dist=single", "optim=lion", "model=tiny", "metrics.wandb=false",
           "train.cpu_threads=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["step"] for r in metrics(run)] == [1, 2]
    assert [r["dropout"] for r in metrics(run)] == [0.1, 0.1]  # tiny_cpu: early dropout for 50 steps
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000001", "step-00000002"]
    plot = subprocess.run(["refact-train", "plot", str(run)], capture_output=True, text=True, timeout=120)
    assert plot.returncode == 0, plot.stderr
    assert (run / "plots" / "loss.png").is_file()
