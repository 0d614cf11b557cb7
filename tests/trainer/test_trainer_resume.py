"""Exact resume (single process, bitwise), kill -9 at a random point, corrupt checkpoints, NaN handling."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import TINY, cli_env, losses, metrics, train_inprocess, weights
from refact_train.checkpoint import latest_valid, verify

# FIM on and early dropout across the stop point: the data RNG and the dropout RNG both have to resume exactly.
RESUME = ["train.max_steps=6", "checkpoint.every=3", "data.fim.rate=0.5", "early_dropout.rate=0.1",
          "early_dropout.until_step=5"]


@pytest.fixture(scope="module")
def reference_run(corpus_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("ref")
    train_inprocess(RESUME + [f"data.path={corpus_dir}", f"run_dir={run}"])
    return run


def test_loss_falls_single(reference_run):
    ls = losses(reference_run)
    assert ls[6] < ls[1] - 0.1, ls


def test_stop_and_resume_is_bitwise_identical(reference_run, corpus_dir, tmp_path):
    common = RESUME + [f"data.path={corpus_dir}", f"run_dir={tmp_path}"]
    state = train_inprocess(common + ["train.stop_after=2"])
    assert state.step == 2
    state = train_inprocess(common)  # resume=auto picks step-2
    assert state.step == 6
    ref, got = weights(reference_run, 6), weights(tmp_path, 6)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert losses(tmp_path) == losses(reference_run)
    dropout = {r["step"]: r["dropout"] for r in metrics(tmp_path)}
    assert dropout == {1: 0.1, 2: 0.1, 3: 0.1, 4: 0.1, 5: 0.1, 6: 0.0}


def test_kill_9_at_a_random_point_then_resume(corpus_dir, tmp_path):
    """SIGKILL anywhere (even mid-checkpoint); the rerun resumes from the newest intact checkpoint, bitwise."""
    steps = 40
    overrides = RESUME + [f"data.path={corpus_dir}", "checkpoint.every=1", f"train.max_steps={steps}"]
    train_inprocess(overrides + [f"run_dir={tmp_path / 'ref'}"])
    run = tmp_path / "killed"
    args = [sys.executable, "-m", "refact_train.cli.train"] + TINY + overrides + [f"run_dir={run}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env())
    ckpts = run / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpts.is_dir() and any(p.name.startswith("step-") for p in ckpts.iterdir())):
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.5))
    assert proc.poll() is None, "the run ended before the kill: make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = sorted(p.name for p in ckpts.iterdir())
    assert f"step-{steps:08d}" not in killed_at
    assert train_inprocess(overrides + [f"run_dir={run}"]).step == steps  # the same command again (in-process)
    got, ref = weights(run, steps), weights(tmp_path / "ref", steps)
    assert all(torch.equal(ref[k], got[k]) for k in ref), f"checkpoints when killed: {killed_at}"
    # keep_last 3 (default), and a checkpoint half-written when killed is gone once that step is saved again
    assert sorted(p.name for p in ckpts.iterdir()) == [f"step-{s:08d}" for s in range(steps - 2, steps + 1)]


def test_corrupt_and_incomplete_checkpoints_are_skipped(reference_run, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(reference_run / "checkpoints", run / "checkpoints")
    newest = run / "checkpoints" / "step-00000006"
    with open(newest / "model.pt", "r+b") as f:  # truncated by a crash of the filesystem, say
        f.truncate(100)
    (run / "checkpoints" / "step-00000009").mkdir()  # a step dir without its completion marker
    assert "truncated" in verify(newest)
    found = latest_valid(run / "checkpoints")
    assert found.name == "step-00000003"
    err = capsys.readouterr().err
    assert "step-00000009" in err and "step-00000006" in err


def test_flipped_byte_is_detected(reference_run, tmp_path):
    import shutil
    ckpt = tmp_path / "c"
    shutil.copytree(reference_run / "checkpoints" / "step-00000003", ckpt)
    data = bytearray((ckpt / "optimizer.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (ckpt / "optimizer.pt").write_bytes(bytes(data))
    assert "hash" in verify(ckpt)


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what a tampered pickle does when it is loaded
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_whose_rng_file_runs_code_is_refused(reference_run, corpus_dir, tmp_path):
    # The RNG states were loaded with weights_only=False: a checkpoint handed over by someone else (its hashes
    # rewritten to match, as anyone who can write it can) ran its pickle's code on resume.
    import shutil
    from refact_train.checkpoint import write_marker
    run, marker = tmp_path / "run", tmp_path / "pwned"
    shutil.copytree(reference_run / "checkpoints" / "step-00000003", run / "checkpoints" / "step-00000003")
    ckpt = run / "checkpoints" / "step-00000003"
    torch.save({"torch": RunsCode(marker)}, ckpt / "rng" / "rank-00000.pt")
    write_marker(ckpt)
    assert verify(ckpt) is None
    proc = subprocess.run([sys.executable, "-m", "refact_train.cli.train", *TINY, *RESUME, f"data.path={corpus_dir}",
                           f"run_dir={run}"], capture_output=True, text=True, timeout=300, env=cli_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "holds objects other than RNG states" in proc.stderr and not marker.exists()


def test_nan_loss_skips_steps_then_stops_with_last_good_checkpoint(corpus_dir, tmp_path):
    """An absurd lr makes the weights overflow after step 1: later losses are NaN/inf, skipped, then the run stops."""
    from refact_train.trainer import NonFiniteLossError
    with pytest.raises(NonFiniteLossError):
        train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path}", "train.max_steps=20", "checkpoint.every=1",
                         "optim.lr=1e38", "optim.clip_grad=0", "train.max_nan_steps=2", "optim.schedule=constant"])
    rows = metrics(tmp_path)
    skipped = [r for r in rows if r["skipped"]]
    assert len(skipped) == 3 and all(r["loss"] in ("nan", "inf", "-inf") for r in skipped)
    last_good = latest_valid(tmp_path / "checkpoints")
    assert last_good is not None and verify(last_good) is None
    assert int(last_good.name.split("-")[1]) < skipped[-1]["step"]


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM, signal.SIGINT])
def test_preemption_signal_checkpoints_and_exits(corpus_dir, tmp_path, sig):
    """SLURM sends SIGUSR1 (or SIGTERM) before preemption: finish the step, checkpoint, return; a rerun resumes.
    Ctrl-C too (it was a KeyboardInterrupt traceback with no checkpoint, or one left half-written)."""
    import threading
    from refact_train.checkpoint import read_trainer_state
    overrides = [f"data.path={corpus_dir}", f"run_dir={tmp_path}", "train.max_steps=500", "checkpoint.every=1000"]
    metrics_file = tmp_path / "metrics.jsonl"

    def send_when_training():
        while not (metrics_file.is_file() and metrics_file.read_text().count("\n") >= 2):
            time.sleep(0.02)
        os.kill(os.getpid(), sig)
    threading.Thread(target=send_when_training, daemon=True).start()
    state = train_inprocess(overrides)
    assert 2 <= state.step < 500
    ckpt = latest_valid(tmp_path / "checkpoints")
    assert ckpt is not None and read_trainer_state(ckpt).step == state.step
    assert signal.getsignal(sig) is not None  # the previous handler is back


def test_signal_during_setup_is_not_lost(corpus_dir, tmp_path, monkeypatch):
    """A preemption signal that arrives while the model is being built still checkpoints and exits after step 1."""
    import refact_train.trainer as trainer_module
    from refact_train.checkpoint import read_trainer_state

    original = trainer_module.prepare_model

    def prepare_then_signal(*args, **kwargs):
        out = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGUSR1)  # before run() installs its own handler
        return out

    monkeypatch.setattr(trainer_module, "prepare_model", prepare_then_signal)
    before = signal.getsignal(signal.SIGUSR1)
    state = train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path}", "train.max_steps=50",
                             "checkpoint.every=1000"])
    assert state.step == 1
    assert read_trainer_state(latest_valid(tmp_path / "checkpoints")).step == 1
    assert signal.getsignal(signal.SIGUSR1) == before


def test_a_second_ctrl_c_stops_at_once(corpus_dir, tmp_path, monkeypatch):
    import refact_train.trainer as trainer_module
    original = trainer_module.prepare_model

    def prepare_then_two_ctrl_c(*args, **kwargs):
        out = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # recorded: stop after the step
        os.kill(os.getpid(), signal.SIGINT)  # now
        return out

    monkeypatch.setattr(trainer_module, "prepare_model", prepare_then_two_ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path}", "train.max_steps=50"])
    assert not (tmp_path / "checkpoints").exists() and signal.getsignal(signal.SIGINT) == before


def test_initial_weights_with_a_nan_are_refused_before_any_step(corpus_dir, tmp_path):
    """They gave a NaN loss from step 1: the run skipped max_nan_steps steps, checkpointing the NaN weights at each,
    then stopped with exit 3 saying that 'the last good checkpoint' was untouched."""
    from safetensors.torch import load_file, save_file
    from refact_train.checkpoint import CheckpointError
    from refact_train.cli.export import main as export_main
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path / 'a'}", "train.max_steps=1"])
    assert export_main([str(tmp_path / "a"), str(tmp_path / "hf")]) == 0
    weights_file = tmp_path / "hf" / "model.safetensors"
    sd = load_file(weights_file)
    sd["transformer.wte.weight"][3, 5] = float("nan")
    save_file(sd, weights_file, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"transformer\.wte\.weight holds 1 NaN or inf value"):
        train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path / 'b'}", f"init_from={tmp_path / 'hf'}",
                         "train.max_steps=5", "checkpoint.every=1", "train.max_nan_steps=2"])
    assert not (tmp_path / "b" / "checkpoints").exists()
