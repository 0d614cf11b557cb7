#!/usr/bin/env bash
# Install Slurm (slurm-wlm: slurmctld, slurmd, clients) and munge from Debian packages, for the launch tests and CI.
#
# Nothing is configured system-wide and no daemon is started here: the test fixture (tests/launch/slurm_cluster.py)
# writes its own slurm.conf and munge key under a temporary directory and starts munged, slurmctld and
# `slurmd -N localhost` there, on free ports, so several clusters can run side by side and none outlives its tests.
#
# Exit status 0 when sbatch, srun, scontrol, slurmctld, slurmd and munged are all on PATH afterwards.
set -euo pipefail

NEEDED=(sbatch srun scontrol squeue scancel slurmctld slurmd munged)

missing() {
    local cmd
    for cmd in "${NEEDED[@]}"; do
        # Debian puts the daemons in /usr/sbin, which a non-login PATH may lack.
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || echo "$cmd"
    done
}

if [ -z "$(missing)" ]; then
    echo "install_slurm: already installed: $(sbatch --version 2>/dev/null || echo 'sbatch ?')"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_slurm: missing $(missing | tr '\n' ' ')and no apt-get here; install slurm-wlm and munge by hand" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

export DEBIAN_FRONTEND=noninteractive
# The packages try to start their services; in containers without systemd that fails harmlessly (policy-rc.d).
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends slurm-wlm munge

still_missing="$(missing | tr '\n' ' ')"
if [ -n "$still_missing" ]; then
    echo "install_slurm: still missing after apt-get install: $still_missing" >&2
    exit 1
fi
echo "install_slurm: installed $(sbatch --version)"
