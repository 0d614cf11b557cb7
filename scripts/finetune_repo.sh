#!/usr/bin/env bash
# Fine-tune a model on your own code (docs/finetune_repo.md):
#   bash scripts/finetune_repo.sh BASE_HF_DIR REPO [REPO ...]
# refact-pipeline on the repositories (base model's tokenizer, licence filter off, a few files held out) ->
# refact-eval of the base model on the held-out files -> refact-train (LoRA by default, full as an option) ->
# refact-export of a merged HF directory -> refact-eval again -> the numbers before and after side by side.
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
#   REFACT_FT_TRAIN_ARGS []              more refact-train overrides, e.g. "dist=fsdp2 train.device=cuda"
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 2 ]]; then
  echo "usage: bash scripts/finetune_repo.sh BASE_HF_DIR REPO [REPO ...]" >&2
  exit 2
fi
PYTHON=${PYTHON:-python3}
BASE=$(cd "$1" && pwd)
shift
REPOS=()
for repo in "$@"; do
  [[ -d "$repo" ]] || { echo "finetune_repo: $repo is not a directory" >&2; exit 2; }
  REPOS+=("'$(cd "$repo" && pwd)'")
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
rm -rf "$WORK/data" "$WORK/run" "$WORK/hf" "$WORK/eval"
mkdir -p "$WORK/eval" && touch "$WORK/$MARKER"
WORK=$(cd "$WORK" && pwd)

TRAIN_ARGS=()
[[ -n "${REFACT_FT_STEPS:-}" ]] && TRAIN_ARGS+=("train.max_steps=$REFACT_FT_STEPS")
[[ -n "${REFACT_FT_SEQ_LEN:-}" ]] && TRAIN_ARGS+=("data.seq_len=$REFACT_FT_SEQ_LEN")
[[ -n "${REFACT_FT_BATCH:-}" ]] && TRAIN_ARGS+=("train.global_batch=$REFACT_FT_BATCH")
[[ -n "${REFACT_FT_MICRO_BATCH:-}" ]] && TRAIN_ARGS+=("train.micro_batch=$REFACT_FT_MICRO_BATCH")
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

step "4/5 refact-export the last checkpoint (LoRA adapters merged into plain weights)"
LAST=$(ls -d "$WORK"/run/checkpoints/step-* | sort | tail -n 1)
refact-export "$LAST" "$WORK/hf"

step "5/5 refact-eval of the fine-tuned model on the same held-out files"
refact-eval "model=$WORK/hf" "${EVAL_ARGS[@]}" "out=$WORK/eval/after.json"

step "done in $((SECONDS - START)) s: before and after ($WORK/eval/compare.md)"
"$PYTHON" scripts/eval_compare.py "$WORK/eval/before.json" "$WORK/eval/after.json" "$WORK/eval/compare.md"
echo "fine-tuned model (merged HF directory): $WORK/hf"
