"""launch/slurm/pipeline.sbatch on a real single-node Slurm: the stages as job arrays give the local run's output,
and a rerun skips what is finished."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from launch_corpus import PIPELINE_OPTIONS, published_files  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PIPELINE_SBATCH = REPO / "launch" / "slurm" / "pipeline.sbatch"

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def submit_pipeline(slurm, raw: Path, out: Path, log: Path, tasks: int = 2) -> tuple[int, list[int]]:
    """Submit pipeline.sbatch, wait for its submission job; returns the final job and the array jobs."""
    env = dict(slurm.env, PIPELINE_TASKS=str(tasks))
    job = slurm.sbatch("--output", str(log), str(PIPELINE_SBATCH), f"input={raw}", f"output={out}",
                       *PIPELINE_OPTIONS, env=env, cwd=log.parent)
    info = slurm.wait_job(job, timeout=120)
    text = log.read_text()
    assert info.state == "COMPLETED", text
    arrays = [int(line.split("array job ")[1].split()[0]) for line in text.splitlines() if "as array job" in line]
    final = int(text.strip().splitlines()[-1].split()[-1])
    return final, arrays


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_pipeline_arrays_give_the_local_output_and_a_rerun_skips_finished_tasks(slurm, raw_corpus, corpus_dir,
                                                                                  tmp_path):
    out = tmp_path / "out"
    final, arrays = submit_pipeline(slurm, raw_corpus, out, tmp_path / "submit.out")
    info = slurm.wait_job(final, timeout=600)
    assert info.state == "COMPLETED", (tmp_path / "submit.out").read_text() + "\n" + "\n".join(
        p.name + ":\n" + p.read_text() for p in sorted((out / "slurm-logs").glob("*.out")))
    assert len(arrays) >= 8  # one array per step: ingest (2), filters, exact (3) and near (4) dedup ...
    for array in arrays:
        tasks = slurm.array_jobs(array)
        assert len(tasks) == 2 and all(t.state == "COMPLETED" for t in tasks), tasks
        assert all(t.fields.get("Dependency", "(null)") == "(null)" for t in tasks)  # satisfied by then

    local, on_slurm = published_files(corpus_dir), published_files(out)
    assert sorted(local) == sorted(on_slurm)
    for name in local:
        assert local[name] == on_slurm[name], f"{name} differs between the local run and the Slurm arrays"

    # The same command again, this time run by bash as on a login node (no planning job): every task finds its
    # units done (markers) and the outputs stay untouched.
    before = mtimes(out / "stages")
    result = slurm.run("bash", str(PIPELINE_SBATCH), f"input={raw_corpus}", f"output={out}", *PIPELINE_OPTIONS,
                       env=dict(slurm.env, PIPELINE_TASKS="2"), cwd=tmp_path, timeout=120)
    final = int(result.stdout.strip().splitlines()[-1].split()[-1])
    assert slurm.wait_job(final, timeout=600).state == "COMPLETED"
    assert mtimes(out / "stages") == before
    assert published_files(out) == on_slurm
    rerun_logs = [p.read_text() for p in (out / "slurm-logs").glob("pipeline-*.out")
                  if int(p.stem.rsplit("-", 1)[1].split("_")[0]) > max(arrays) + 1]
    assert len(rerun_logs) == 2 * len(arrays) + 1
    assert all("complete, skipped" in text for text in rerun_logs), rerun_logs
