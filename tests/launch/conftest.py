"""Fixtures for the launch tests: a real single-node Slurm cluster, installed on demand."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import SlurmCluster, find_daemon  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install_slurm.sh"
SLURM_COMMANDS = ("sbatch", "srun", "scontrol", "squeue", "scancel", "sinfo", "slurmctld", "slurmd", "munged")


def _slurm_missing() -> list[str]:
    return [name for name in SLURM_COMMANDS if find_daemon(name) is None]


def _ensure_slurm_installed() -> str | None:
    """Install slurm-wlm + munge when missing; returns the reason to skip, or None when Slurm is usable."""
    if not _slurm_missing():
        return None
    if os.environ.get("REFACT_NO_SLURM_INSTALL"):
        return f"Slurm commands missing ({', '.join(_slurm_missing())}) and REFACT_NO_SLURM_INSTALL is set"
    result = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900)
    if result.returncode != 0 or _slurm_missing():
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-5:])
        return f"Slurm could not be installed by {INSTALL_SCRIPT.name} (exit {result.returncode}): {tail}"
    return None


def _started_cluster(nodes: int):
    reason = _ensure_slurm_installed()
    if reason:
        print(f"\nSKIP slurm tests: {reason}", file=sys.stderr)
        pytest.skip(reason)
    cluster = SlurmCluster(nodes=nodes)
    try:
        cluster.start()
    except Exception:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def slurm_cluster():
    """Node `localhost`: what most tests use."""
    cluster = _started_cluster(nodes=1)
    yield cluster
    cluster.stop()


@pytest.fixture
def slurm_two_nodes():
    """A second cluster of two nodes (node1, node2: two slurmd on this host), for multi-node jobs."""
    cluster = _started_cluster(nodes=2)
    yield cluster
    cluster.stop()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> SlurmCluster:
    """The session's cluster with an empty queue (a test never inherits another test's jobs)."""
    slurm_cluster.cancel_all()
    yield slurm_cluster
    slurm_cluster.cancel_all()


@pytest.fixture(scope="session")
def raw_corpus(tmp_path_factory) -> Path:
    from launch_corpus import write_raw_corpus

    return write_raw_corpus(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory, raw_corpus) -> Path:
    """`refact-pipeline` output (documents + token shards) of the small corpus, made by the local run."""
    from launch_corpus import run_local_pipeline

    return run_local_pipeline(raw_corpus, tmp_path_factory.mktemp("corpus") / "out")
