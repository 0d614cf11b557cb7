#!/usr/bin/env bash
# Train on one node with N processes: torchrun with a standalone c10d rendezvous on 127.0.0.1.
#
#   launch/torchrun.sh [--nproc N] [HYDRA_OVERRIDE ...]
#   launch/torchrun.sh --nproc 2 dist=ddp model=tiny data.path=out/corpus run_dir=runs/a train.max_steps=100
#
# N defaults to NPROC_PER_NODE, else the visible GPUs, else 1. Every other argument goes to refact-train unchanged
# (LAUNCH_COMMAND=other-command runs another program the same way). Per-rank logs: <run_dir>/logs/torchrun-*/ranks.
# `kill -USR1 <this script's pid>` makes the trainer checkpoint and stop (exit status 75); resume=auto resumes.
# More knobs (LAUNCH_DEVICE, MASTER_PORT, LAUNCH_LOG_DIR): launch/common.sh and docs/launch.md.
set -euo pipefail
LAUNCH_ROOT="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"  # the checkout's launch/, also through a symlink
# shellcheck source=common.sh
source "$LAUNCH_ROOT/common.sh"

while [ $# -gt 0 ]; do
    case "$1" in
        --nproc|--nproc-per-node) NPROC_PER_NODE="${2:?--nproc needs a number}"; shift 2 ;;
        --nproc=*|--nproc-per-node=*) NPROC_PER_NODE="${1#*=}"; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
args_is_count "${NPROC_PER_NODE:-1}" 1 ||
    launch_die "--nproc/NPROC_PER_NODE must be a positive integer, got '${NPROC_PER_NODE}'"

launch_resolve_processes  # says a GPU mismatch now, before any rank starts
launch_export_runtime_env

# Port 0: the rendezvous store binds a port the kernel picks (one node needs no agreed port).
port="${MASTER_PORT:-0}"
log_dir="$(launch_log_dir "$@")/torchrun-$(date -u +%Y%m%d-%H%M%S)-$$"
launch_torchrun 1 127.0.0.1 "$port" 1 "local-$$" "$log_dir" -- "$@" || exit $?
