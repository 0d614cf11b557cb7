#!/usr/bin/env bash
# Fine-tune a model on your own code (docs/finetune_repo.md):
#   bash scripts/finetune_repo.sh BASE_HF_DIR REPO [REPO ...] [--gguf]
# refact-pipeline on the repositories (base model's tokenizer, licence filter off, a few files held out) ->
# refact-eval of the base model on the held-out files -> refact-train (LoRA by default, full as an option) with the
# validation loss of the held-out files on a schedule -> refact-export of the best checkpoint as a merged HF
# directory -> refact-eval again -> the numbers before and after side by side.
# --gguf also writes the merged model as a GGUF file for llama.cpp / Ollama beside it (docs/gguf.md).
#
# Environment (defaults in brackets):
#   REFACT_FT_DIR [runs/finetune_repo]   work directory (a previous fine-tune in it is replaced)
#   REFACT_FT_MODE [lora]                lora (experiment finetune_lora_repo) | full (experiment finetune_fim)
#   REFACT_FT_STEPS []                   optimizer steps (empty: the experiment's: 250 LoRA, 2000 full)
#   REFACT_FT_SEQ_LEN, REFACT_FT_BATCH, REFACT_FT_MICRO_BATCH []   context, global and per-process batch
#   REFACT_FT_LICENSE_FILTER [0]         1: keep only permissively licensed files, as for pretraining data
#   REFACT_FT_HOLDOUT [10]               files held out for the evaluation (at most; 20% of the code otherwise)
#   REFACT_FT_EVAL_LIMIT []              evaluate at most this many held-out files (empty: all)
#   REFACT_FT_THREADS []                 torch CPU threads for training and evals (empty: torch's default)
#   REFACT_FT_TRAIN_CMD [refact-train]   e.g. "launch/torchrun.sh --nproc 8" for 8 GPUs
#   REFACT_FT_VAL_EVERY []               validation loss on the held-out files every N steps (empty: the
#                                        experiment's, 25 LoRA; full: 200); the best checkpoint is the one exported
#   REFACT_FT_TRAIN_ARGS []              more refact-train overrides, e.g. "dist=fsdp2 train.device=cuda"
#   REFACT_FT_GGUF_DTYPE [f16]           with --gguf: f32 (exact) | f16 | bf16 | q8_0
set -euo pipefail
cd "$(dirname "$0")/.."
GGUF=0
ARGS=()
for arg in "$@"; do
  if [[ "$arg" == --gguf ]]; then GGUF=1; else ARGS+=("$arg"); fi
done
set -- "${ARGS[@]}"
if [[ $# -lt 2 ]]; then
  echo "usage: bash scripts/finetune_repo.sh BASE_HF_DIR REPO [REPO ...] [--gguf]" >&2
  exit 2
fi
GGUF_DTYPE=${REFACT_FT_GGUF_DTYPE:-f16}
case "$GGUF_DTYPE" in
  f32|f16|bf16|q8_0) ;;
  *) echo "finetune_repo: REFACT_FT_GGUF_DTYPE=$GGUF_DTYPE: use f32, f16, bf16 or q8_0" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
BASE=$(cd "$1" && pwd)
shift
REPOS=()
for repo in "$@"; do
  [[ -d "$repo" ]] || { echo "finetune_repo: $repo is not a directory" >&2; exit 2; }
  abs=$(cd "$repo" && pwd)
  abs=${abs//\\/\\\\}
  REPOS+=("'${abs//\'/\\\'}'")  # a quoted Hydra list item: backslashes and quotes escaped
done
WORK=${REFACT_FT_DIR:-runs/finetune_repo}
MODE=${REFACT_FT_MODE:-lora}
HOLDOUT=${REFACT_FT_HOLDOUT:-10}
TRAIN_CMD=${REFACT_FT_TRAIN_CMD:-refact-train}
MARKER=.refact_finetune_repo
START=$SECONDS
step() { printf '\n== [%4ds] %s ==\n' "$((SECONDS - START))" "$*"; }

case "$MODE" in
  lora) EXPERIMENT=finetune_lora_repo ;;
  full) EXPERIMENT=finetune_fim ;;
  *) echo "finetune_repo: REFACT_FT_MODE=$MODE: use lora or full" >&2; exit 2 ;;
esac
if [[ -e "$WORK" && ! -e "$WORK/$MARKER" && -n "$(ls -A "$WORK" 2>/dev/null)" ]]; then
  echo "finetune_repo: $WORK exists and is not a fine-tune directory: choose another REFACT_FT_DIR" >&2
  exit 2
fi
rm -rf "$WORK/data" "$WORK/run" "$WORK/hf" "$WORK/eval" "$WORK"/model-*.gguf
mkdir -p "$WORK/eval" && touch "$WORK/$MARKER"
WORK=$(cd "$WORK" && pwd)

TRAIN_ARGS=()
[[ -n "${REFACT_FT_STEPS:-}" ]] && TRAIN_ARGS+=("train.max_steps=$REFACT_FT_STEPS")
[[ -n "${REFACT_FT_SEQ_LEN:-}" ]] && TRAIN_ARGS+=("data.seq_len=$REFACT_FT_SEQ_LEN")
[[ -n "${REFACT_FT_BATCH:-}" ]] && TRAIN_ARGS+=("train.global_batch=$REFACT_FT_BATCH")
[[ -n "${REFACT_FT_MICRO_BATCH:-}" ]] && TRAIN_ARGS+=("train.micro_batch=$REFACT_FT_MICRO_BATCH")
if [[ -n "${REFACT_FT_VAL_EVERY:-}" ]]; then
  TRAIN_ARGS+=("validation.every=$REFACT_FT_VAL_EVERY")
elif [[ "$MODE" == full ]]; then
  TRAIN_ARGS+=("validation.every=200")  # finetune_fim serves any shards; here the holdout gives a valid split
fi
read -r -a EXTRA <<< "${REFACT_FT_TRAIN_ARGS:-}"
EVAL_ARGS=("tasks=[heldout_fim,perplexity]" "data=$WORK/data")
[[ -n "${REFACT_FT_EVAL_LIMIT:-}" ]] && EVAL_ARGS+=("limit=$REFACT_FT_EVAL_LIMIT")
if [[ -n "${REFACT_FT_THREADS:-}" ]]; then
  TRAIN_ARGS+=("train.cpu_threads=$REFACT_FT_THREADS")
  EVAL_ARGS+=("cpu_threads=$REFACT_FT_THREADS")
fi

step "1/5 refact-pipeline on ${#REPOS[@]} repositories with the base model's tokenizer"
LICENSE_ARGS=(license.enabled=false)
[[ "${REFACT_FT_LICENSE_FILTER:-0}" == 1 ]] && LICENSE_ARGS=(license.enabled=true)
INPUT=$(IFS=,; echo "${REPOS[*]}")
refact-pipeline "input=[$INPUT]" "output=$WORK/data" "tokenizer=$BASE" "${LICENSE_ARGS[@]}" \
  holdout.fraction=0.2 "holdout.max_documents=$HOLDOUT" "holdout.kinds=[code]"

step "2/5 refact-eval of the base model on the held-out files"
refact-eval "model=$BASE" "${EVAL_ARGS[@]}" "out=$WORK/eval/before.json"

step "3/5 refact-train experiment=$EXPERIMENT init_from=$BASE"
# shellcheck disable=SC2086  # TRAIN_CMD is a command with its arguments
$TRAIN_CMD "experiment=$EXPERIMENT" "init_from=$BASE" "data.path=$WORK/data" "run_dir=$WORK/run" \
  metrics.wandb=false "${TRAIN_ARGS[@]}" "${EXTRA[@]}"

step "4/5 refact-export the best checkpoint by validation loss (LoRA adapters merged into plain weights)"
"$PYTHON" scripts/main_job_report.py validation "$WORK/run"
if [[ -e "$WORK/run/best" ]]; then
  EXPORTED="$WORK/run/best"
else  # validation turned off (validation.every=0): the last checkpoint
  EXPORTED=$(ls -d "$WORK"/run/checkpoints/step-* | sort | tail -n 1)
  echo "no best checkpoint (validation off): exporting the last one, $EXPORTED"
fi
refact-export "$EXPORTED" "$WORK/hf"
refact-train plot "$WORK/run" >/dev/null
echo "dashboard: $WORK/run/plots/dashboard.png"
if [[ "$GGUF" == 1 ]]; then
  refact-export "$WORK/hf" "$WORK/model-$GGUF_DTYPE.gguf" --format gguf --dtype "$GGUF_DTYPE"
fi

step "5/5 refact-eval of the fine-tuned model on the same held-out files"
refact-eval "model=$WORK/hf" "${EVAL_ARGS[@]}" "out=$WORK/eval/after.json"

step "done in $((SECONDS - START)) s: before and after ($WORK/eval/compare.md)"
"$PYTHON" scripts/eval_compare.py "$WORK/eval/before.json" "$WORK/eval/after.json" "$WORK/eval/compare.md"
FROM=$(basename "$(readlink -f "$EXPORTED")")
echo "fine-tuned model (merged HF directory, from checkpoint $FROM): $WORK/hf"
if [[ "$GGUF" == 1 ]]; then
  echo "the same model for llama.cpp / Ollama: $WORK/model-$GGUF_DTYPE.gguf (docs/gguf.md)"
fi
