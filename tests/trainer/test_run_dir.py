"""run_dir attacks: a file, an uncreatable or unwritable path, inside the training data, and two runs at once."""
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import TINY, cli_env, train_inprocess
from refact_train.run_dir import LOCK_NAME, RunDirError, lock_run_dir


def command(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "refact_train.cli.train", *TINY, *overrides]


@pytest.fixture
def data_copy(corpus_dir, tmp_path):
    return shutil.copytree(corpus_dir, tmp_path / "data")


@pytest.mark.parametrize("where, said", [
    ("file", "is a file, not a directory"),  # FileExistsError traceback after the model was built, before
    ("file/sub", "cannot be created: Not a directory"),  # NotADirectoryError traceback
    ("/proc/no-such-run", "cannot be created"),  # nobody, root included, can create it
    ("/proc", "is not writable"),
    ("data", "inside it, the pipeline's directory"),  # trained, writing checkpoints/ beside shards/
    ("data/shards", "inside it, the pipeline's directory"),  # a rebuild of the shards deleted the checkpoints
    ("data/runs/a", "inside it, the pipeline's directory"),
])
def test_a_run_dir_the_run_cannot_use_is_refused_before_any_work(data_copy, tmp_path, where, said):
    (tmp_path / "file").write_text("not a directory")
    run = where if where.startswith("/") else tmp_path / where
    with pytest.raises(RunDirError, match=said):
        train_inprocess([f"data.path={data_copy}", f"run_dir={run}", "train.max_steps=1"])
    assert not (data_copy / "config.yaml").exists() and not list(data_copy.rglob("metrics.jsonl"))


def test_a_metrics_file_that_is_a_directory_is_refused(corpus_dir, tmp_path):
    (tmp_path / "metrics.jsonl").mkdir()  # IsADirectoryError traceback after the model was built, before
    with pytest.raises(RunDirError, match="metrics.jsonl is not a file"):
        train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path}", "train.max_steps=1"])


def test_a_locked_run_dir_is_refused_and_the_lock_goes_with_the_run(corpus_dir, tmp_path):
    lock = lock_run_dir(tmp_path)
    try:
        with pytest.raises(RunDirError, match="is in use by another refact-train"):
            train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path}", "train.max_steps=1"])
    finally:
        lock.close()
    assert train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path}", "train.max_steps=1"]).step == 1
    lock_run_dir(tmp_path).close()  # the finished run let it go


def test_a_second_refact_train_into_a_running_run_dir_is_refused(corpus_dir, tmp_path):
    """Both ran before, interleaving their steps in metrics.jsonl and resuming from each other's checkpoints."""
    run = tmp_path / "run"
    first = subprocess.Popen(command([f"data.path={corpus_dir}", f"run_dir={run}", "train.max_steps=2000",
                                      "checkpoint.every=1000"]), stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()[-3000:]
        second = subprocess.run(command([f"data.path={corpus_dir}", f"run_dir={run}", "train.max_steps=2",
                                         "seed=7"]), capture_output=True, text=True, timeout=120, env=cli_env())
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-3000:]
        assert f"is in use by another refact-train (pid {first.pid} on " in second.stderr, second.stderr[-3000:]
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGTERM)  # it checkpoints and exits
        first.communicate(timeout=120)
    assert first.returncode == 0 and (run / LOCK_NAME).is_file()
