"""How SIGUSR1 reaches the ranks of a train.sbatch job: from Slurm's own `--signal=USR1@T` before the time limit,
and from a signal sent to the batch shell only (`--signal=B:USR1@T` or `scancel --batch`), which the script passes
on. Each time the ranks stop cleanly and the job requeues itself. The ranks run rank_probe.py (LAUNCH_COMMAND), a
small gloo program that records the signal, so these tests do not depend on the trainer's speed."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[2]
TRAIN_SBATCH = REPO / "launch" / "slurm" / "train.sbatch"
PROBE = Path(__file__).parent / "rank_probe.py"

pytestmark = [pytest.mark.slurm, pytest.mark.distributed, pytest.mark.slow]


def submit_probe(slurm, tmp_path: Path, *sbatch_args: str) -> tuple[int, Path, Path]:
    out, probe_out = tmp_path / "job.out", tmp_path / "probe"
    env = dict(slurm.env, LAUNCH_DEVICE="cpu", NPROC_PER_NODE="2", LAUNCH_COMMAND=str(PROBE))
    job = slurm.sbatch(*sbatch_args, "--output", str(out), str(TRAIN_SBATCH), f"out={probe_out}", "wait_s=600",
                       f"run_dir={tmp_path / 'run'}", env=env, cwd=tmp_path)
    return job, out, probe_out


def wait_for(predicate, timeout: float, what: str, out: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{out.read_text() if out.exists() else ''}")
        time.sleep(0.5)


def restarted(probe_out: Path) -> bool:
    ranks = [probe_out / f"rank-{r}.json" for r in (0, 1)]
    return all(p.exists() and json.loads(p.read_text())["restart"] == "1" for p in ranks)


def test_slurm_time_limit_signal_stops_the_ranks_and_requeues(slurm, tmp_path):
    # Slurm sends SIGUSR1 50 s before the 1-minute limit (it checks about every 30 s, so 10-40 s in).
    job, out, probe_out = submit_probe(slurm, tmp_path, "--time=1", "--signal=USR1@50")
    wait_for(lambda: (probe_out / "signal-0").exists() and (probe_out / "signal-1").exists(), 120,
             "SIGUSR1 at both ranks", out)
    wait_for(lambda: restarted(probe_out), 120, "the requeued job to start again", out)
    text = out.read_text()
    assert "SIGUSR1 received" in text and "requeueing job" in text
    assert slurm.job(job).restarts == 1


def test_signal_to_the_batch_shell_is_passed_on_to_the_ranks(slurm, tmp_path):
    job, out, probe_out = submit_probe(slurm, tmp_path)
    wait_for(lambda: (probe_out / "rank-0.json").exists() and (probe_out / "rank-1.json").exists(), 180,
             "both ranks to start", out)
    slurm.run("scancel", "--batch", "--signal=USR1", str(job))  # as sbatch --signal=B:USR1@T does
    wait_for(lambda: restarted(probe_out), 120, "the requeued job to start again", out)
    text = out.read_text()
    assert "passing it on to the job steps" in text and "requeueing job" in text
    assert (probe_out / "signal-0").exists() and (probe_out / "signal-1").exists()
