"""The Slurm fixture itself: a real cluster that runs a batch job with a job step and stops cleanly."""
import pytest

pytestmark = pytest.mark.slurm


def test_batch_job_with_a_step_runs_on_localhost(slurm, tmp_path):
    out = tmp_path / "job.out"
    job_id = slurm.sbatch("--output", str(out), "--wrap", "srun hostname; scontrol show hostnames $SLURM_JOB_NODELIST")
    info = slurm.wait_job(job_id, timeout=60)
    assert info.state == "COMPLETED", (info, out.read_text() if out.exists() else "no output")
    assert out.read_text().splitlines()[-1] == "localhost"
