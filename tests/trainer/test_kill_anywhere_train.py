"""SIGKILL `refact-train` at random moments (some while a checkpoint is being written), rerun with resume=auto, and
get the uninterrupted run's losses and final weights bitwise; and `refact-train` refuses token shards made with
another tokenizer, in one line naming both hashes and the fix.

Kill moments are random (seeded and printed, KILL_SEED replays a failure): after the run has logged a new step,
a random pause; or the instant a checkpoint's temporary directory appears (the kill lands inside its write).
"""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import TINY, cli_env, metrics, train_inprocess, weights

RESUME = ["data.fim.rate=0.5", "early_dropout.rate=0.1", "early_dropout.until_step=5", "checkpoint.every=1",
          "checkpoint.keep_last=2"]


def command(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "refact_train.cli.train", *TINY, *overrides]


def logged_steps(run: Path) -> int:
    path = run / "metrics.jsonl"
    return path.read_text().count("\n") if path.is_file() else 0


def kill_once(overrides: list[str], run: Path, mode: str, rng: random.Random) -> str:
    """Start the run and SIGKILL it: `step` after it logs a new step and a random pause, `checkpoint` while a
    checkpoint directory is still temporary. What happened, for the failure message."""
    before = logged_steps(run)
    proc = subprocess.Popen(command(overrides), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env())
    deadline = time.monotonic() + 300
    note = ""
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if mode == "checkpoint" and any(p.name.startswith(".tmp-step-") for p in (run / "checkpoints").glob(".*")):
                note = "in a checkpoint write"
                break
            if mode == "step" and logged_steps(run) > before:
                pause = rng.uniform(0.0, 0.25)
                time.sleep(pause)
                note = f"{pause:.3f}s after a step"
                break
            time.sleep(0.0005)
        finished = proc.poll() is not None
        if not finished:
            proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        err = proc.stderr.read().decode()
        proc.stderr.close()
    assert finished or proc.returncode == -signal.SIGKILL, err[-2000:]
    assert not finished or proc.returncode == 0, err[-2000:]
    return f"{mode}: {note}" + (" (finished first)" if finished else f", at step {logged_steps(run)}")


def kill_and_resume(corpus_dir: Path, tmp_path: Path, steps: int, modes: list[str]) -> None:
    overrides = RESUME + [f"data.path={corpus_dir}", f"train.max_steps={steps}"]
    train_inprocess(overrides + [f"run_dir={tmp_path / 'ref'}"])
    run = tmp_path / "killed"
    seed = int(os.environ.get("KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    kills = [kill_once(overrides + [f"run_dir={run}"], run, mode, rng) for mode in modes]
    landed = [k for k in kills if "finished" not in k]
    assert len(landed) == len(modes), f"seed {seed}: the run ended before every kill: {kills}"
    assert train_inprocess(overrides + [f"run_dir={run}"]).step == steps  # the same command, resume=auto

    reference = {r["step"]: r["loss"] for r in metrics(tmp_path / "ref")}
    logged = metrics(run)  # every line: steps done before a kill, and again after the resume
    assert {r["step"] for r in logged} == set(reference), f"seed {seed}, kills {kills}"
    wrong = [(r["step"], r["loss"], reference[r["step"]]) for r in logged if r["loss"] != reference[r["step"]]]
    assert not wrong, f"seed {seed}, kills {kills}: (step, loss, uninterrupted loss) {wrong[:5]}"
    ref, got = weights(tmp_path / "ref", steps), weights(run, steps)
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref), f"seed {seed}, kills {kills}"
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not leftovers, f"seed {seed}, kills {kills}: temporary checkpoint directories left: {leftovers}"


def test_two_kills_one_inside_a_checkpoint_write_then_resume_is_bitwise(corpus_dir, tmp_path):
    kill_and_resume(corpus_dir, tmp_path, steps=40, modes=["checkpoint", "step"])


@pytest.mark.slow
def test_twelve_random_kills_then_resume_is_bitwise(corpus_dir, tmp_path):
    kill_and_resume(corpus_dir, tmp_path, steps=160, modes=["step", "checkpoint"] * 6)


def test_refact_train_refuses_shards_of_another_tokenizer(corpus_dir, tmp_path):
    """Through the real command: one line with both hashes and the fix, nonzero exit, no training step."""
    from data_pipeline.tokenizer import load_tokenizer, train_bpe
    from trainer_corpus import stdlib_documents

    shards_tok = load_tokenizer(corpus_dir / "shards" / "tokenizer.json")
    other = train_bpe(stdlib_documents()[:4], vocab_size=512, min_frequency=2)
    other.save(tmp_path / "other")
    assert other.sha256 != shards_tok.sha256
    run = tmp_path / "run"
    proc = subprocess.run(command([f"data.path={corpus_dir}", f"tokenizer={tmp_path / 'other'}", f"run_dir={run}",
                                   "train.max_steps=2"]), capture_output=True, text=True, timeout=300,
                          env=cli_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if shards_tok.sha256 in line and other.sha256 in line]
    assert lines, proc.stderr[-3000:]
    assert "tokenizer=" in lines[0] and "rebuild the shards" in lines[0], lines[0]
    assert logged_steps(run) == 0
