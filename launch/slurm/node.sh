#!/usr/bin/env bash
# One node of a Slurm training job (started by train.sbatch with `srun`, one task per node): checks this node's
# GPUs, waits until the first node's rendezvous port answers (non-first nodes), then runs torchrun.
#   node.sh HEAD_ADDR PORT LOG_DIR [HYDRA_OVERRIDE ...]
# Exit status 75 when SIGUSR1 (Slurm --signal, scancel --signal=USR1) made the trainer checkpoint and stop.
set -euo pipefail
LAUNCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../common.sh
source "$LAUNCH_ROOT/common.sh"

head_addr="$1" port="$2" log_dir="$3"
shift 3
node_rank="${SLURM_NODEID:?node.sh runs inside a Slurm job step (srun)}"
nnodes="${SLURM_JOB_NUM_NODES:?}"
export LAUNCH_NODE_RANK="$node_rank"
# shellcheck disable=SC2034  # read by the log functions of common.sh
LAUNCH_WHERE="node $node_rank/$nnodes $(hostname)"

launch_resolve_processes  # a GPU mismatch stops this node (and, through srun --kill-on-bad-exit, the job) here
launch_export_runtime_env

is_host=0
if [ "$node_rank" = 0 ]; then
    is_host=1
else
    # The first node opens the rendezvous store; say plainly when it cannot be reached instead of a stack trace.
    timeout_s="${RDZV_TIMEOUT:-900}"
    start=$SECONDS
    until (exec 3<>"/dev/tcp/$head_addr/$port") 2>/dev/null; do
        if (( SECONDS - start >= timeout_s )); then
            launch_die "rendezvous timeout: nothing answered at $head_addr:$port (the first node's torchrun store)" \
                "for ${timeout_s}s. Check that node 0 started (job output), that $(hostname) can reach" \
                "$head_addr:$port (firewall, address of the right interface: set MASTER_ADDR), or raise RDZV_TIMEOUT."
        fi
        sleep 1
    done
fi

# Slurm delivers SIGUSR1 to every process of this step; launch_torchrun passes it on again to ranks still starting.
launch_torchrun "$nnodes" "$head_addr" "$port" "$is_host" "slurm-${SLURM_JOB_ID}" "$log_dir" -- "$@" || exit $?
