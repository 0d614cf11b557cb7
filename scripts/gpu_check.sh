#!/usr/bin/env bash
# The GPU proof in one command (issue 14), for a bare single-GPU box (H100/H200; Python 3.12, torch, Triton,
# transformers, peft; no internet):
#
#   bash scripts/gpu_check.sh OUT_DIR                 # on the GPU box; wheels from .whl/ (scripts/gpu_wheels.sh)
#   bash scripts/gpu_check.sh --cpu OUT_DIR           # the same steps at the tiny shape on the CPU, box simulated
#   bash scripts/gpu_check.sh --cpu --no-compile OUT_DIR   # ... without the torch.compile rows (the quick test)
#
# Steps (each time-boxed; a failing step never stops the others; the whole run fits GPU_CHECK_DEADLINE_S, 480 s on
# a GPU; the compiled bench rows, the slowest, run last on whatever time is left):
#   0 install the packages the box lacks from the carried wheels (scripts/gpu_env.py)
#   1 the `-m gpu` tests          2 MFU and tokens/s per attention backend, eager then compiled (bench/mfu_gpu.py)
#   3 refact-train itself ~30 steps on shards made on the spot (bench/gpu_shards.py), early dropout + activation
#     checkpointing; the loss must fall and its logged MFU agree with the bench row of the same configuration
#   4 peak memory: LoRA, full fine-tune, 2-way FSDP2 simulated (bench/memory_gpu.py)
#   5 generation tokens/s at batch 1 and 8 with the KV cache (bench/generation_gpu.py)
#   6 OUT_DIR/gpu_check.json, gpu_check.md and gpu_check.log (scripts/gpu_check_report.py)
# Exit status: 0 when every step passed, 1 otherwise (the report says which).
# A rerun of some steps only (after a fix, on what is left of a GPU lease): GPU_CHECK_STEPS=install,shards,train,...
# (a prefix selects a family: mfu = every bench row); the others are reported as not selected.
set -uo pipefail
cpu=0 compile=1 out=""
for a in "$@"; do
  case "$a" in
    --cpu) cpu=1 ;;
    --no-compile) compile=0 ;;
    -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    -*) echo "gpu_check: unknown option $a" >&2; exit 2 ;;
    *) out=$a ;;
  esac
done
[ -n "$out" ] || { echo "usage: bash scripts/gpu_check.sh [--cpu] [--no-compile] OUT_DIR" >&2; exit 2; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$out" && out=$(cd "$out" && pwd)
work=${GPU_CHECK_WORK:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$work/logs"
: > "$work/steps.jsonl"
rm -f "$work"/{install,mfu,memory,generation}.json "$work/tests.xml"  # a reused work folder: this run's figures only
start=$(date +%s)
py=${PYTHON:-python3}

if [ "$cpu" = 1 ]; then
  deadline=${GPU_CHECK_DEADLINE_S:-600}
  # the tiny shape, one thread (the CPU is shared); MFU against a nominal 1e11 FLOP/s so the accounting still runs.
  # A tiny step takes milliseconds, so the trainer's per-step overhead (data, FIM, metrics) weighs: loose tolerance.
  shape=(--model tiny --set n_embd=64 n_layer=2 n_head=2 vocab_size=512)
  train_shape=(model=tiny model.n_embd=64 model.n_layer=2 model.n_head=2 data.seq_len=64 train.device=cpu
               train.precision=fp32 train.cpu_threads=1 train.vocab_from_tokenizer=true metrics.peak_flops=1e11
               optim.lr=2e-3)
  seq=64 peak=(--peak-flops 1e11) dev=(--device cpu --cpu-threads 1) mfu_tol=0.75
  backends_eager="sdpa" backends_compiled="sdpa"   # FlexAttention has no CPU backward
  gen=(--prompt 32 --new 16) memcfg=lora,fsdp2_2way_zero2 shard_args=(--max-files 40 --vocab 512)
  export OMP_NUM_THREADS=1
  # the box's view of Python: its absent packages are hidden unless installed from the wheels (scripts/gpu_box_sim)
  export GPU_CHECK_HIDE=$($py "$repo/scripts/gpu_env.py" hide --wheels "$repo/.whl") GPU_CHECK_SITE="$work/site"
  sim="$repo/scripts/gpu_box_sim:"
else
  deadline=${GPU_CHECK_DEADLINE_S:-480}
  shape=(--model refact_1_6b)
  train_shape=(model=refact_1_6b data.seq_len=4096 train.device=cuda train.precision=bf16
               train.vocab_from_tokenizer=false optim.lr=2e-4)
  seq=4096 peak=() dev=(--device cuda) mfu_tol=0.15
  backends_eager="sdpa,flex,flash" backends_compiled="sdpa,flex,flash"
  gen=(--prompt 512 --new 128) memcfg=lora,lora_no_ckpt,full,fsdp2_2way,fsdp2_2way_zero2 shard_args=()
  sim=""
fi
export PYTHONPATH="${sim}$work/site:$repo" PYTHONUNBUFFERED=1 WANDB_MODE=disabled HF_HUB_OFFLINE=1 \
       TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TORCHINDUCTOR_CACHE_DIR="$work/inductor"
cd "$repo"

# run_step NAME BOX_SECONDS CMD...: at most BOX seconds and never past the deadline; its log in $work/logs/NAME.log
run_step() {
  local name=$1 box=$2; shift 2
  local left=$((deadline - ($(date +%s) - start) - 15))  # 15 s kept for the report
  local t=$(( box < left ? box : left )) t0 rc
  if [ -n "${GPU_CHECK_STEPS:-}" ] && ! [[ ",$GPU_CHECK_STEPS," == *",$name,"* || ",$GPU_CHECK_STEPS," == *",${name%%_*},"* ]]; then
    echo "{\"step\": \"$name\", \"rc\": null, \"skipped\": \"not selected (GPU_CHECK_STEPS)\"}" >> "$work/steps.jsonl"
    return
  fi
  if [ "$t" -lt 10 ]; then
    echo "{\"step\": \"$name\", \"rc\": null, \"skipped\": \"no time left before the ${deadline}s deadline\"}" \
      >> "$work/steps.jsonl"
    echo "== $name: skipped (deadline)"
    return
  fi
  echo "== $name (at most ${t}s)"
  t0=$(date +%s%N)
  timeout -k 10 "$t" "$@" > "$work/logs/$name.log" 2>&1
  rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $((ms / 1000)).$(printf %03d $((ms % 1000))), \
\"timeout_s\": $t, \"timed_out\": $([ $rc = 124 ] || [ $rc = 137 ] && echo true || echo false)}" >> "$work/steps.jsonl"
  echo "   rc $rc, $((ms / 1000)) s"
}

mfu_row() {  # mfu_row NAME BOX BACKEND on|off [extra bench args]
  local name=$1 box=$2 backend=$3 mode=$4; shift 4
  run_step "$name" "$box" $py bench/mfu_gpu.py "${shape[@]}" "${dev[@]}" "${peak[@]}" --seq "$seq" \
    --backends "$backend" --compile-modes "$mode" --json "$work/mfu.json" "$@"
}

run_step install 60 $py scripts/gpu_env.py install --wheels "$repo/.whl" --site "$work/site" --json "$work/install.json"

run_step tests 120 $py -m pytest -p no:cacheprovider -o addopts="" -ra --strict-markers -m gpu \
  --junitxml="$work/tests.xml" tests/model/test_model.py tests/model/test_attention_gpu.py \
  tests/trainer/test_trainer_gpu.py tests/evals/test_gpu.py

for b in ${backends_eager//,/ }; do
  [ "$b" = flex ] && box=150 || box=75  # flex compiles its attention kernel even in an eager model
  mfu_row "mfu_${b}_eager" "$box" "$b" off
done
# the trainer's configuration (step 3) as a bench row: sdpa, checkpointing, micro-batch 2 x 2 accumulation
mfu_row mfu_train_config 75 sdpa off --ckpt --micro-batch 2 --grad-accum 2

run_step shards 60 $py bench/gpu_shards.py "$work/data" "${shard_args[@]}"
run_step train 150 $py -m refact_train.cli.train "${train_shape[@]}" "data.path=$work/data" "run_dir=$work/run" \
  model.attention_backend=sdpa train.max_steps=30 train.global_batch=4 train.micro_batch=2 \
  train.activation_checkpointing=true early_dropout.rate=0.1 early_dropout.until_step=10 optim.warmup_steps=5 \
  checkpoint.every=1000 checkpoint.keep_last=1 metrics.wandb=false metrics.progress=false resume=never

run_step memory 130 $py bench/memory_gpu.py "${shape[@]}" "${dev[@]}" --seq "$seq" \
  --configs "$memcfg" --timeout 45 --json "$work/memory.json"
run_step generation 60 $py bench/generation_gpu.py "${shape[@]}" "${dev[@]}" "${gen[@]}" --json "$work/generation.json"

if [ "$compile" = 1 ]; then  # train.compile=true's cost is compilation: these rows get whatever time is left
  for b in ${backends_compiled//,/ }; do
    mfu_row "mfu_${b}_compiled" 170 "$b" on
  done
fi

$py scripts/gpu_check_report.py --work "$work" --out "$out" --mode "$([ $cpu = 1 ] && echo cpu || echo gpu)" \
  --mfu-tolerance "$mfu_tol" --compile "$compile" --started "$start"
rc=$?
echo "gpu_check: report in $out/gpu_check.md (work files in $work)"
exit $rc
