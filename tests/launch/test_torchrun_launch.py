"""launch/torchrun.sh on one node, and the launcher's plain-language errors (GPU mismatch, rendezvous)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import free_port  # noqa: E402
from launch_training import checkpoint_steps, logged_steps, tiny_overrides  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TORCHRUN_SH = REPO / "launch" / "torchrun.sh"
NODE_SH = REPO / "launch" / "slurm" / "node.sh"


def run(cmd, env=None, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=dict(os.environ, **(env or {})))


def start_probe(tmp_path: Path) -> tuple[Path, subprocess.Popen]:
    """launch/torchrun.sh with two ranks of rank_probe.py, which wait for SIGUSR1 (up to 300 s)."""
    out = tmp_path / "probe"
    env = dict(os.environ, LAUNCH_DEVICE="cpu", LAUNCH_COMMAND=str(Path(__file__).parent / "rank_probe.py"))
    proc = subprocess.Popen(["bash", str(TORCHRUN_SH), "--nproc", "2", f"out={out}", "wait_s=300",
                             f"run_dir={tmp_path}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    return out, proc


@pytest.mark.distributed
def test_torchrun_sh_trains_the_tiny_model_with_two_processes(corpus_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run(["bash", TORCHRUN_SH, "--nproc", "2", *tiny_overrides(corpus_dir, run_dir, 4, 2)],
                 env={"LAUNCH_DEVICE": "cpu"}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert checkpoint_steps(run_dir) == [2, 4]
    assert logged_steps(run_dir) == [1, 2, 3, 4]
    state = json.loads((run_dir / "checkpoints" / "step-00000004" / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    # one log directory per rank, as torchrun --log-dir writes them
    rank_dirs = {p.parent.name for p in run_dir.glob("logs/torchrun-*/ranks/*/attempt_0/*/stdout.log")}
    assert rank_dirs == {"0", "1"}
    assert "rendezvous 127.0.0.1:0" in result.stderr + result.stdout


def test_gpu_mismatch_is_said_before_training_starts(tmp_path):
    run_dir = tmp_path / "run"
    result = run(["bash", TORCHRUN_SH, f"run_dir={run_dir}"],
                 env={"LAUNCH_DEVICE": "gpu", "NPROC_PER_NODE": "2", "CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert result.returncode == 2
    assert "GPU mismatch" in result.stderr and "requested 2 GPU process(es)" in result.stderr
    assert "0 GPU(s) are visible" in result.stderr and "CUDA_VISIBLE_DEVICES=" in result.stderr
    assert not run_dir.exists(), "nothing may start before the check"


@pytest.mark.slow
def test_rendezvous_timeout_names_address_and_port(tmp_path):
    """The first node waits for a second one that never comes: the error names where it waited."""
    port = free_port()
    script = (f'source "{REPO}/launch/common.sh"; launch_resolve_processes; '
              f'launch_torchrun 2 127.0.0.1 {port} 1 rdzv-test "{tmp_path}/logs" --')
    result = run(["bash", "-c", script], env={"LAUNCH_DEVICE": "cpu", "NPROC_PER_NODE": "1", "RDZV_TIMEOUT": "3",
                                              "LAUNCH_COMMAND": "true"}, timeout=120)
    assert result.returncode != 0
    assert f"rendezvous at 127.0.0.1:{port} timed out after 3s" in result.stderr + result.stdout


def test_unreachable_first_node_names_address_and_port(tmp_path):
    """node.sh on a second node (the environment Slurm gives it) when nothing listens on the first node."""
    port = free_port()
    env = {"SLURM_NODEID": "1", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_ID": "7", "RDZV_TIMEOUT": "2",
           "LAUNCH_DEVICE": "cpu", "NPROC_PER_NODE": "1"}
    result = run(["bash", NODE_SH, "127.0.0.1", port, tmp_path / "logs", f"run_dir={tmp_path}"], env=env)
    assert result.returncode == 2
    assert f"nothing answered at 127.0.0.1:{port}" in result.stderr


def usr1_stops_both_ranks(out, proc, wait: Callable[[], None], timeout: float) -> str:
    """`wait()`, send SIGUSR1 to the launcher; it must exit 75 with both ranks signalled. Returns its output."""
    try:
        wait()
        proc.send_signal(signal.SIGUSR1)
        text, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 75, text
    assert (out / "signal-0").exists() and (out / "signal-1").exists()
    return text


@pytest.mark.slow
@pytest.mark.distributed
def test_usr1_to_torchrun_sh_reaches_every_rank_and_exits_75(tmp_path):
    out, proc = start_probe(tmp_path)

    def both_ranks_ready() -> None:
        deadline = time.monotonic() + 180
        while not ((out / "rank-0.json").exists() and (out / "rank-1.json").exists()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ""
            time.sleep(0.2)
    text = usr1_stops_both_ranks(out, proc, both_ranks_ready, timeout=120)
    assert "stopped on SIGUSR1" in text


@pytest.mark.slow
@pytest.mark.distributed
def test_usr1_before_the_ranks_have_started_still_stops_them(tmp_path):
    """Slurm can send its time-limit SIGUSR1 in the first second of a job, while the ranks are still importing torch
    with the signal ignored: the launcher must pass it on again until they have a handler, not lose it."""
    out, proc = start_probe(tmp_path)

    def torchrun_starting() -> None:
        for line in proc.stdout:  # the launcher's "torchrun: ..." line: torchrun is starting, no rank is ready yet
            if "torchrun:" in line:
                break
        assert not (out / "rank-0.json").exists()
    usr1_stops_both_ranks(out, proc, torchrun_starting, timeout=150)
