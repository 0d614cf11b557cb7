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
# Relative paths (BASE_HF_DIR, REPO, REFACT_FT_DIR) are taken from the directory the script is run in.
set -euo pipefail
CALLER_DIR=$PWD
cd "$(dirname "$(readlink -f "$0")")/.."  # the checkout (also through a symlink): REFACT_FT_TRAIN_CMD runs from here
# shellcheck source=../launch/args.sh
source launch/args.sh
fail() { echo "finetune_repo: $*" >&2; exit 2; }
# An absolute path for a path given relative to the caller's directory (a leading - or a lone - is a name, not cd's).
from_caller() { if [[ "$1" == /* ]]; then echo "$1"; else echo "$CALLER_DIR/$1"; fi; }
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
  *) fail "REFACT_FT_GGUF_DTYPE=$GGUF_DTYPE: use f32, f16, bf16 or q8_0" ;;
esac
for knob in REFACT_FT_STEPS REFACT_FT_SEQ_LEN REFACT_FT_BATCH REFACT_FT_MICRO_BATCH REFACT_FT_HOLDOUT \
    REFACT_FT_EVAL_LIMIT REFACT_FT_THREADS; do
  args_require_count "$knob" 1 finetune_repo
done
args_require_count REFACT_FT_VAL_EVERY 0 finetune_repo
MODE=${REFACT_FT_MODE:-lora}
case "$MODE" in
  lora) EXPERIMENT=finetune_lora_repo ;;
  full) EXPERIMENT=finetune_fim ;;
  *) fail "REFACT_FT_MODE=$MODE: use lora or full" ;;
esac
PYTHON=${PYTHON:-python3}
BASE=$(from_caller "$1")
[[ -f "$BASE/config.json" ]] || fail "BASE_HF_DIR $1 is not a Hugging Face model directory (no config.json in" \
  "$BASE): pass the released model's directory or one refact-export wrote"
BASE=$(cd "$BASE" && pwd)
shift
REPOS=()
for repo in "$@"; do
  abs=$(from_caller "$repo")
  [[ -d "$abs" ]] || fail "REPO $repo is not a directory ($abs)"
  if [[ -f "$abs/HEAD" && -d "$abs/objects" && -d "$abs/refs" ]]; then
    fail "REPO $repo is a bare git repository (no working files; its hooks would be read as code):" \
      "clone it (git clone $repo DIR) and pass DIR"
  fi
  REPOS+=("$(hydra_quote "$(cd "$abs" && pwd)")")
done
WORK=$(from_caller "${REFACT_FT_DIR:-$PWD/runs/finetune_repo}")
HOLDOUT=${REFACT_FT_HOLDOUT:-10}
TRAIN_CMD=${REFACT_FT_TRAIN_CMD:-refact-train}
MARKER=.refact_finetune_repo
START=$SECONDS
step() { printf '\n== [%4ds] %s ==\n' "$((SECONDS - START))" "$*"; }

if [[ -e "$WORK" && ! -e "$WORK/$MARKER" && -n "$(ls -A "$WORK" 2>/dev/null)" ]]; then
  fail "$WORK exists and is not a fine-tune directory: choose another REFACT_FT_DIR"
fi
rm -rf "$WORK/data" "$WORK/run" "$WORK/hf" "$WORK/eval" "$WORK"/model-*.gguf
mkdir -p "$WORK/eval" && touch "$WORK/$MARKER"
WORK=$(cd "$WORK" && pwd)
# Paths as quoted Hydra values: a space, comma, quote, ~, # or non-ASCII letter breaks an unquoted override.
Q_BASE=$(hydra_quote "$BASE")
Q_DATA=$(hydra_quote "$WORK/data")

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
EVAL_ARGS=("tasks=[heldout_fim,perplexity]" "data=$Q_DATA")
[[ -n "${REFACT_FT_EVAL_LIMIT:-}" ]] && EVAL_ARGS+=("limit=$REFACT_FT_EVAL_LIMIT")
if [[ -n "${REFACT_FT_THREADS:-}" ]]; then
  TRAIN_ARGS+=("train.cpu_threads=$REFACT_FT_THREADS")
  EVAL_ARGS+=("cpu_threads=$REFACT_FT_THREADS")
fi

step "1/5 refact-pipeline on ${#REPOS[@]} repositories with the base model's tokenizer"
LICENSE_ARGS=(license.enabled=false)
[[ "${REFACT_FT_LICENSE_FILTER:-0}" == 1 ]] && LICENSE_ARGS=(license.enabled=true)
INPUT=$(IFS=,; echo "${REPOS[*]}")
refact-pipeline "input=[$INPUT]" "output=$Q_DATA" "tokenizer=$Q_BASE" "${LICENSE_ARGS[@]}" \
  holdout.fraction=0.2 "holdout.max_documents=$HOLDOUT" "holdout.kinds=[code]"
if ! compgen -G "$WORK/data/heldout/*.parquet" >/dev/null; then
  fail "no file of the repositories was held out for the evaluation: they gave too few code files" \
    "($("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["output"]["documents"])' \
    "$WORK/data/stats.json") document(s) kept, $WORK/data/stats.json says what was dropped). Pass repositories" \
    "with source code (20% of the code files are held out, at most REFACT_FT_HOLDOUT)"
fi

step "2/5 refact-eval of the base model on the held-out files"
refact-eval "model=$Q_BASE" "${EVAL_ARGS[@]}" "out=$(hydra_quote "$WORK/eval/before.json")"

step "3/5 refact-train experiment=$EXPERIMENT init_from=$BASE"
# shellcheck disable=SC2086  # TRAIN_CMD is a command with its arguments
$TRAIN_CMD "experiment=$EXPERIMENT" "init_from=$Q_BASE" "data.path=$Q_DATA" "run_dir=$(hydra_quote "$WORK/run")" \
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
refact-eval "model=$(hydra_quote "$WORK/hf")" "${EVAL_ARGS[@]}" "out=$(hydra_quote "$WORK/eval/after.json")"

step "done in $((SECONDS - START)) s: before and after ($WORK/eval/compare.md)"
"$PYTHON" scripts/eval_compare.py "$WORK/eval/before.json" "$WORK/eval/after.json" "$WORK/eval/compare.md"
FROM=$(basename "$(readlink -f "$EXPORTED")")
echo "fine-tuned model (merged HF directory, from checkpoint $FROM): $WORK/hf"
if [[ "$GGUF" == 1 ]]; then
  echo "the same model for llama.cpp / Ollama: $WORK/model-$GGUF_DTYPE.gguf (docs/gguf.md)"
fi
