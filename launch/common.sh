# shellcheck shell=bash
# Shared helpers for launch/torchrun.sh and launch/slurm/*: sourced, never run.
#
# Environment knobs (all optional):
#   NPROC_PER_NODE   processes per node (default: the GPUs Slurm gave the node, else the visible GPUs, else 1)
#   LAUNCH_DEVICE    gpu | cpu | auto (default auto: gpu when GPUs were requested or are visible)
#   LAUNCH_COMMAND   the program torchrun starts on every rank (default: refact-train)
#   LAUNCH_LOG_DIR   where per-rank logs go (default: <run_dir>/logs when a run_dir=... override is given, else ./logs)
#   RDZV_TIMEOUT     seconds to wait for every node to join the rendezvous (default 900)

# shellcheck source=args.sh
source "$(dirname "${BASH_SOURCE[0]}")/args.sh"

launch_log() { echo "[launch $(date -u +%H:%M:%S)${LAUNCH_WHERE:+ $LAUNCH_WHERE}] $*" >&2; }

launch_die() {
    echo "[launch${LAUNCH_WHERE:+ $LAUNCH_WHERE}] ERROR: $*" >&2
    exit "${LAUNCH_DIE_CODE:-2}"
}

# The value of KEY=... among Hydra overrides ("$@"), unquoted as Hydra reads it (run_dir='/runs/my run'), or empty.
launch_override_value() {
    local key="$1" arg
    shift
    for arg in "$@"; do
        case "$arg" in "$key="*|"+$key="*|"++$key="*) hydra_unquote "${arg#*=}"; echo ;; esac
    done | tail -n 1
}

launch_log_dir() {
    local run_dir
    run_dir="$(launch_override_value run_dir "$@")"
    echo "${LAUNCH_LOG_DIR:-${run_dir:-.}/logs}"
}

# A TCP port free on this host right now (the kernel picks it).
launch_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1]); s.close()'
}

# GPUs visible to this process (honours CUDA_VISIBLE_DEVICES); 0 without CUDA.
launch_visible_gpus() {
    if [ -n "${LAUNCH_VISIBLE_GPUS:-}" ]; then  # set once per node, the query costs a torch import
        echo "$LAUNCH_VISIBLE_GPUS"
        return
    fi
    # Without an NVIDIA device node there is nothing to count: skip the (slow) torch import.
    if ! compgen -G "/dev/nvidia[0-9]*" >/dev/null && ! command -v nvidia-smi >/dev/null 2>&1; then
        echo 0
        return
    fi
    python3 -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0
}

# Decide device and processes per node, and check them against the GPUs this node really has, before any
# training process starts. Sets LAUNCH_DEVICE (gpu|cpu) and NPROC_PER_NODE.
launch_resolve_processes() {
    local requested found slurm_gpus
    found="$(launch_visible_gpus)"
    export LAUNCH_VISIBLE_GPUS="$found"
    # GPUs the scheduler gave this node ("" outside Slurm or without GPUs). SLURM_GPUS_ON_NODE is set by Slurm for
    # --gpus-per-node / --gres=gpu:N; SLURM_GPUS_PER_NODE may read "a100:4".
    slurm_gpus="${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-}}"
    slurm_gpus="${slurm_gpus##*:}"
    requested="${NPROC_PER_NODE:-$slurm_gpus}"
    case "${LAUNCH_DEVICE:-auto}" in
        auto) if [ -n "$slurm_gpus" ] || [ "$found" -gt 0 ]; then LAUNCH_DEVICE=gpu; else LAUNCH_DEVICE=cpu; fi ;;
        gpu|cpu) ;;
        *) launch_die "LAUNCH_DEVICE=$LAUNCH_DEVICE: use gpu, cpu or auto" ;;
    esac
    if ! args_is_count "${requested:-1}" 1; then
        launch_die "processes per node must be a positive integer, got '$requested'" \
            "(NPROC_PER_NODE=${NPROC_PER_NODE:-unset}, Slurm GPUs on node=${slurm_gpus:-none})"
    fi
    [ -z "$requested" ] || requested=$(( 10#$requested ))  # 08 is not octal
    if [ "$LAUNCH_DEVICE" = gpu ]; then
        requested="${requested:-$found}"
        # Fewer GPUs than ranks is the classic "invalid device ordinal" / NCCL hang a few minutes in: say it now.
        if [ "$found" -lt "${requested:-1}" ] || [ "$found" = 0 ]; then
            launch_die "GPU mismatch on $(hostname): requested ${requested:-0} GPU process(es) per node" \
                "(NPROC_PER_NODE=${NPROC_PER_NODE:-unset}, Slurm GPUs on node=${slurm_gpus:-none})" \
                "but $found GPU(s) are visible (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset})." \
                "Fix: request as many GPUs as processes (sbatch --gpus-per-node=N, NPROC_PER_NODE=N)," \
                "or set LAUNCH_DEVICE=cpu to train on CPUs with gloo."
        elif [ "$found" -gt "$requested" ]; then
            launch_log "note: $found GPUs visible on $(hostname), $requested process(es) use the first $requested"
        fi
    fi
    NPROC_PER_NODE="${requested:-1}"
    export LAUNCH_DEVICE NPROC_PER_NODE
}

# Settings for NCCL and the CPU threads of each rank; anything already set by the user wins.
launch_export_runtime_env() {
    export PYTHONUNBUFFERED=1
    export TORCH_NCCL_ASYNC_ERROR_HANDLING="${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}"  # fail fast instead of hanging
    export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
    export TORCH_NCCL_DUMP_ON_TIMEOUT="${TORCH_NCCL_DUMP_ON_TIMEOUT:-0}"
    local cpus="${SLURM_CPUS_ON_NODE:-$(nproc)}"
    local per_rank=$(( cpus / NPROC_PER_NODE ))
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( per_rank > 0 ? per_rank : 1 ))}"
}

# What torchrun starts on every rank, as torchrun arguments: LAUNCH_COMMAND (a program on PATH or a path) when set,
# else the refact-train console script, else the same app as a module (an environment without the console script).
launch_program_args() {
    local cmd="${LAUNCH_COMMAND:-refact-train}" path
    path="$(command -v "$cmd" || true)"
    if [ -n "$path" ]; then
        printf '%s\n' --no-python "$path"
    elif [ -z "${LAUNCH_COMMAND:-}" ] && python3 -c 'import refact_train.cli.train' 2>/dev/null; then
        printf '%s\n' --module refact_train.cli.train
    else
        launch_die "'$cmd' is not on PATH. Fix: pip install -e . in the repository (or activate the environment" \
            "that has it) before launching."
    fi
}

# Explain a failed torchrun from its output ($1 = log file) in terms of what the user can fix.
launch_explain_failure() {
    local log="$1" addr="$2" port="$3" nnodes="$4"
    if grep -q -E "EADDRINUSE|[Aa]ddress already in use" "$log" 2>/dev/null; then
        launch_log "ERROR: port $port is already in use on $(hostname), so the rendezvous store cannot listen there." \
            "Fix: unset MASTER_PORT (a free port is picked) or set it to a free port."
    elif grep -q -E "RendezvousTimeoutError|RendezvousClosedError" "$log" 2>/dev/null; then
        launch_log "ERROR: rendezvous at $addr:$port timed out after ${RDZV_TIMEOUT:-900}s:" \
            "not all $nnodes node(s) joined. Check that every node started (srun output), that they can reach" \
            "$addr:$port (firewall, the address resolves to the right interface), or raise RDZV_TIMEOUT."
    elif grep -q -E "RendezvousConnectionError|DistNetworkError|failed to connect|client socket has timed out" \
            "$log" 2>/dev/null; then
        launch_log "ERROR: cannot connect to the rendezvous store at $addr:$port. Check that the first node" \
            "($addr) is up and that port $port is reachable from $(hostname); set MASTER_PORT to another port" \
            "if it is taken."
    fi
}

# Run torchrun for this node and wait for it, turning SIGUSR1 (Slurm's warning before the time limit or a
# preemption) into a checkpoint-and-stop of the trainer:
#   - torchrun starts with SIGUSR1 ignored, so the signal cannot kill the agent (it has no handler for it); the
#     ranks inherit "ignored" and the trainer installs its own handler, which saves a checkpoint and exits;
#   - a SIGUSR1 sent to this script is passed on to the ranks, and again every 2 s until torchrun exits: a rank
#     that was still starting when the signal came (Slurm can send it in the first second of the job) inherited
#     "ignored" and missed it, and a rank that already has the trainer's handler only records it once more. Under
#     Slurm the signal also reaches every process of the step by itself;
#   - the return status is 75 (EX_TEMPFAIL: "try again") when SIGUSR1 arrived, so the caller can requeue.
# Usage: launch_torchrun NNODES ADDR PORT IS_HOST RUN_ID LOG_DIR -- OVERRIDES...
launch_torchrun() {
    local nnodes="$1" addr="$2" port="$3" is_host="$4" run_id="$5" log_dir="$6"
    shift 6
    [ "${1:-}" = "--" ] && shift
    local agent_log rc=0 program_lines
    if ! args_is_count "$port" 0 || (( 10#$port > 65535 )); then
        launch_die "rendezvous port '$port' is not a TCP port (0-65535): check MASTER_PORT" \
            "(unset: a free port is picked)"
    fi
    local -a program
    program_lines="$(launch_program_args)" || exit $?
    mapfile -t program <<< "$program_lines"
    local -a LAUNCH_TORCHRUN=(torchrun)
    command -v torchrun >/dev/null 2>&1 || LAUNCH_TORCHRUN=(python3 -m torch.distributed.run)
    mkdir -p "$log_dir" || launch_die "cannot create the log directory $log_dir"
    agent_log="$log_dir/agent-node${LAUNCH_NODE_RANK:-0}.log"
    launch_log "torchrun: $nnodes node(s) x $NPROC_PER_NODE process(es) on $LAUNCH_DEVICE," \
        "rendezvous $addr:$port (c10d, id $run_id), logs per rank under $log_dir/ranks"
    trap '_launch_forward TERM' TERM
    trap '_launch_forward INT' INT
    (
        trap '' USR1
        exec "${LAUNCH_TORCHRUN[@]}" --nnodes="$nnodes" --nproc-per-node="$NPROC_PER_NODE" \
            --rdzv-backend=c10d --rdzv-endpoint="$addr:$port" --rdzv-id="$run_id" \
            --rdzv-conf="join_timeout=${RDZV_TIMEOUT:-900},is_host=$is_host" \
            --log-dir="$log_dir/ranks" --redirects=3 --tee=3 \
            "${program[@]}" "$@"
    ) > >(tee -a "$agent_log") 2>&1 &
    LAUNCH_TORCHRUN_PID=$!
    [ "$LAUNCH_PREEMPTED" = 1 ] && _launch_repeat_usr1  # the signal came before torchrun started
    launch_wait "$LAUNCH_TORCHRUN_PID" || rc=$?
    trap - TERM INT
    [ -n "$LAUNCH_REPEATER_PID" ] && kill "$LAUNCH_REPEATER_PID" 2>/dev/null
    if [ "$LAUNCH_PREEMPTED" = 1 ]; then
        launch_log "stopped on SIGUSR1 (torchrun exit $rc): the trainer wrote a checkpoint; resume with resume=auto"
        return 75
    fi
    [ "$rc" = 0 ] || launch_explain_failure "$agent_log" "$addr" "$port" "$nnodes"
    return "$rc"
}

# Wait for the child PID and return its exit status. `wait` returns early (status > 128) whenever a trapped signal
# arrives: keep waiting while the child lives.
launch_wait() {
    local rc
    while true; do
        rc=0
        wait "$1" || rc=$?
        kill -0 "$1" 2>/dev/null || return "$rc"
    done
}

_launch_on_usr1() {
    LAUNCH_PREEMPTED=1
    launch_log "SIGUSR1 received (time limit near or preemption): the trainer checkpoints and stops"
    _launch_repeat_usr1
}

_launch_repeat_usr1() {
    if [ -n "$LAUNCH_TORCHRUN_PID" ] && [ -z "$LAUNCH_REPEATER_PID" ]; then
        (   # the ranks are torchrun's children
            while kill -0 "$LAUNCH_TORCHRUN_PID" 2>/dev/null; do
                pkill -USR1 -P "$LAUNCH_TORCHRUN_PID" || true
                sleep 2
            done
        ) &
        LAUNCH_REPEATER_PID=$!
    fi
}

_launch_forward() {
    # torchrun handles TERM/INT itself: it passes SIGTERM on to the ranks and waits for them.
    [ -n "${LAUNCH_TORCHRUN_PID:-}" ] && kill "-$1" "$LAUNCH_TORCHRUN_PID" 2>/dev/null || true
}

# From the moment a launcher sources this file, SIGUSR1 is recorded (and passed on once torchrun runs) instead of
# ending the launcher with bash's default action: Slurm can send it in the first second of a job.
LAUNCH_PREEMPTED=0 LAUNCH_REPEATER_PID="" LAUNCH_TORCHRUN_PID=""
trap _launch_on_usr1 USR1
