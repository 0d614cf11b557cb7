"""launch/slurm/train.sbatch on a real single-node Slurm: training to completion, and preemption + requeue."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from launch_training import checkpoint_steps, final_weights, logged_steps, tiny_overrides  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TRAIN_SBATCH = REPO / "launch" / "slurm" / "train.sbatch"

pytestmark = [pytest.mark.slurm, pytest.mark.distributed]


def submit_training(slurm, tmp_path: Path, overrides: list[str], name: str) -> tuple[int, Path]:
    out = tmp_path / f"{name}.out"
    env = dict(slurm.env, LAUNCH_DEVICE="cpu", NPROC_PER_NODE="2")
    job = slurm.sbatch("--job-name", name, "--output", str(out), str(TRAIN_SBATCH), *overrides, env=env,
                       cwd=tmp_path)
    return job, out


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else f"({path} not written)"


def test_sbatch_trains_the_tiny_model_with_two_processes(slurm, corpus_dir, tmp_path):
    run_dir = tmp_path / "run"
    job, out = submit_training(slurm, tmp_path, tiny_overrides(corpus_dir, run_dir, 4, 2), "train")
    info = slurm.wait_job(job, timeout=300)
    assert info.state == "COMPLETED", read(out)
    assert checkpoint_steps(run_dir) == [2, 4]
    assert logged_steps(run_dir) == [1, 2, 3, 4]
    log_dir = run_dir / "logs" / f"slurm-{job}-r0"
    assert (log_dir / "agent-node0.log").exists()
    assert {p.parent.name for p in log_dir.glob("ranks/*/attempt_0/*/stdout.log")} == {"0", "1"}
    text = read(out)
    assert "rendezvous localhost:" in text and "resume=auto" in text and "training finished" in text


@pytest.mark.slow
def test_preempted_job_checkpoints_requeues_and_ends_with_the_uninterrupted_weights(slurm, corpus_dir, tmp_path):
    steps = 14
    reference_dir = tmp_path / "reference"
    job, out = submit_training(slurm, tmp_path, tiny_overrides(corpus_dir, reference_dir, steps), "reference")
    assert slurm.wait_job(job, timeout=300).state == "COMPLETED", read(out)

    run_dir = tmp_path / "preempted"
    job, out = submit_training(slurm, tmp_path, tiny_overrides(corpus_dir, run_dir, steps), "preempted")
    deadline = time.monotonic() + 300
    while len(logged_steps(run_dir)) < 3:  # well inside the run: a few steps done, most to go
        assert time.monotonic() < deadline, read(out)
        assert slurm.job(job).state in ("PENDING", "RUNNING", "CONFIGURING"), read(out)
        time.sleep(0.2)
    # What Slurm does at --signal=USR1@T before the time limit: SIGUSR1 to every process of the job's steps.
    slurm.run("scancel", "--signal=USR1", str(job))

    info = slurm.wait_job(job, timeout=400)
    text = read(out)
    assert info.state == "COMPLETED", text
    assert info.restarts == 1, text
    assert "requeueing job" in text and "restart 1" in text
    saved = checkpoint_steps(run_dir)
    assert saved[-1] == steps and any(3 <= s < steps for s in saved), (saved, text)  # the checkpoint on the signal
    resumed = logged_steps(run_dir)
    assert sorted(set(resumed)) == list(range(1, steps + 1)), resumed  # every step trained, none lost

    reference, result = final_weights(reference_dir), final_weights(run_dir)
    assert reference.keys() == result.keys()
    for name in reference:
        assert torch.equal(reference[name], result[name]), f"{name} differs after preemption and resume"


@pytest.mark.slow
def test_sbatch_trains_across_two_nodes(slurm_two_nodes, corpus_dir, tmp_path):
    """Two Slurm nodes (two slurmd on this host), one process each: one torchrun per node, c10d rendezvous hosted
    by the first node, the second waiting for its port first."""
    run_dir, out = tmp_path / "run", tmp_path / "two-nodes.out"
    env = dict(slurm_two_nodes.env, LAUNCH_DEVICE="cpu", NPROC_PER_NODE="1", MASTER_ADDR="127.0.0.1")
    job = slurm_two_nodes.sbatch("-N", "2", "--output", str(out), str(TRAIN_SBATCH),
                                 *tiny_overrides(corpus_dir, run_dir, 4, 2), env=env, cwd=tmp_path)
    info = slurm_two_nodes.wait_job(job, timeout=400)
    text = read(out)
    assert info.state == "COMPLETED", text
    assert "2 node(s) [node[1-2]]" in text
    assert checkpoint_steps(run_dir) == [2, 4]
    state = json.loads((run_dir / "checkpoints" / "step-00000004" / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    log_dir = run_dir / "logs" / f"slurm-{job}-r0"
    assert (log_dir / "agent-node0.log").exists() and (log_dir / "agent-node1.log").exists()
