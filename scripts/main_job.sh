#!/usr/bin/env bash
# The main job (docs/main_job.md): raw code and text -> refact-pipeline -> tiny model trained with Lion and early
# dropout on CPU, validated on the held-out split -> dashboard -> HF export loaded by transformers -> refact-eval.
# Nothing is downloaded beyond packages: the corpus is the Python standard library, its docstrings, non-English
# man pages and copies of HumanEval problems.
#
# Sizes (environment; the defaults fit 15 minutes on an idle 2-core machine):
#   REFACT_DEMO_DIR=runs/main_job   everything goes here (a previous main-job run in it is replaced)
#   REFACT_DEMO_STEPS=300           optimizer steps (8 x 128 tokens each); validation loss every STEPS/10
#   REFACT_DEMO_FILES=300           stdlib source files (code)
#   REFACT_DEMO_DOCS=300            docstring pages (English text)
#   REFACT_DEMO_FOREIGN=6           non-English files, REFACT_DEMO_LEAKED=4 files holding HumanEval problems
#   REFACT_DEMO_HOLDOUT=20          code files held out for the evals
#   REFACT_DEMO_EVAL_LIMIT=10       held-out files (4 FIM cuts each) / perplexity windows evaluated
#   REFACT_DEMO_THREADS=1           torch CPU threads for training and evals (empty: torch's default, all cores);
#                                   one thread keeps the tiny model fast even on a busy machine
#   REFACT_DEMO_SKIP_SETUP=0        1: do not run scripts/setup.sh first (already installed)
# A relative REFACT_DEMO_DIR is taken from the directory the script is run in.
set -euo pipefail
CALLER_DIR=$PWD
cd "$(dirname "$(readlink -f "$0")")/.."  # the checkout, also through a symlink
# shellcheck source=../launch/args.sh
source launch/args.sh
for knob in REFACT_DEMO_STEPS REFACT_DEMO_FILES REFACT_DEMO_DOCS REFACT_DEMO_HOLDOUT REFACT_DEMO_EVAL_LIMIT \
    REFACT_DEMO_THREADS; do
  args_require_count "$knob" 1 main_job
done
args_require_count REFACT_DEMO_FOREIGN 0 main_job
args_require_count REFACT_DEMO_LEAKED 0 main_job
PYTHON=${PYTHON:-python3}
WORK=${REFACT_DEMO_DIR:-runs/main_job}
[[ -z "${REFACT_DEMO_DIR:-}" || "$WORK" == /* ]] || WORK="$CALLER_DIR/$WORK"
STEPS=${REFACT_DEMO_STEPS:-300}
FILES=${REFACT_DEMO_FILES:-300}
DOCS=${REFACT_DEMO_DOCS:-300}
FOREIGN=${REFACT_DEMO_FOREIGN:-6}
LEAKED=${REFACT_DEMO_LEAKED:-4}
HOLDOUT=${REFACT_DEMO_HOLDOUT:-20}
EVAL_LIMIT=${REFACT_DEMO_EVAL_LIMIT:-10}
THREADS=${REFACT_DEMO_THREADS-1}
VAL_EVERY=$(( STEPS / 10 > 0 ? STEPS / 10 : 1 ))
MARKER=.refact_main_job
START=$SECONDS

step() { printf '\n== [%4ds] %s ==\n' "$((SECONDS - START))" "$*"; }

if [[ "${REFACT_DEMO_SKIP_SETUP:-0}" != 1 ]]; then
  step "setup: bash scripts/setup.sh"
  bash scripts/setup.sh
fi

# A fresh work directory; only a previous main job's (it holds the marker) is ever removed.
if [[ -e "$WORK" && ! -e "$WORK/$MARKER" && -n "$(ls -A "$WORK" 2>/dev/null)" ]]; then
  echo "main_job: $WORK exists and is not a main-job directory: choose another REFACT_DEMO_DIR" >&2
  exit 2
fi
rm -rf "$WORK/corpus" "$WORK/data" "$WORK/run" "$WORK/hf" "$WORK/eval"
mkdir -p "$WORK" && touch "$WORK/$MARKER"
WORK=$(cd "$WORK" && pwd)
THREAD_ARGS=()
[[ -n "$THREADS" ]] && THREAD_ARGS=("train.cpu_threads=$THREADS")
EVAL_THREAD_ARGS=()
[[ -n "$THREADS" ]] && EVAL_THREAD_ARGS=("cpu_threads=$THREADS")

Q() { hydra_quote "$WORK/$1"; }  # a path under the work directory as a quoted Hydra value (spaces, quotes, é ...)

step "1/7 corpus from this machine: stdlib code, docstrings, non-English man pages, HumanEval copies"
"$PYTHON" -m tools.demo_corpus "$WORK/corpus" --code-files "$FILES" --doc-files "$DOCS" \
  --foreign-files "$FOREIGN" --leaked-files "$LEAKED"

step "2/7 refact-pipeline: filters, dedup, decontamination, BPE tokenizer, token shards, held-out files"
C=$WORK/corpus
refact-pipeline "input=[$(Q corpus/stdlib),$(Q corpus/docs),$(Q corpus/foreign),$(Q corpus/leaked)]" \
  "output=$(Q data)" tokenizer.train=true tokenizer.vocab_size=4096 \
  holdout.fraction=0.1 "holdout.max_documents=$HOLDOUT" "holdout.kinds=[code]"
"$PYTHON" scripts/main_job_report.py drops "$WORK/data" "$C"

step "3/7 train the tiny model: Lion, early dropout, FIM, CPU, $STEPS steps, held-out loss every $VAL_EVERY"
# Warm-up and early dropout scale with the run (300 steps: 20 warm-up steps, dropout 0.1 until step 50); the
# validation loss on the held-out files' valid split every 30 steps (4 batches of 8 windows), the best step kept.
refact-train experiment=tiny_cpu "data.path=$(Q data)" "run_dir=$(Q run)" \
  "train.max_steps=$STEPS" "optim.warmup_steps=$(( STEPS / 15 > 0 ? STEPS / 15 : 1 ))" \
  "early_dropout.until_step=$(( STEPS / 6 > 0 ? STEPS / 6 : 1 ))" \
  "checkpoint.every=$(( STEPS / 3 > 0 ? STEPS / 3 : 1 ))" "validation.every=$VAL_EVERY" validation.max_batches=4 \
  metrics.wandb=false "${THREAD_ARGS[@]}"
"$PYTHON" scripts/main_job_report.py loss "$WORK/run"
"$PYTHON" scripts/main_job_report.py validation "$WORK/run"

step "4/7 the run's dashboard (loss and validation loss, lr, dropout, tokens/s, memory) and single plots"
refact-train plot "$WORK/run"
echo "dashboard: $WORK/run/plots/dashboard.png"

step "5/7 refact-export the last checkpoint, load it with transformers, refact-generate a FIM prompt"
LAST=$(ls -d "$WORK"/run/checkpoints/step-* | sort | tail -n 1)
refact-export "$LAST" "$WORK/hf"
"$PYTHON" scripts/main_job_report.py hf-check "$WORK/hf" "def read_config(path):"
PREFIX=$'import os\n\n\ndef list_python_files(root):\n    found = []\n    for dirpath, _, names in os.walk(root):\n'
SUFFIX=$'\n    return found\n'
echo "refact-generate mode=fim, middle between $(printf %q "$PREFIX") and $(printf %q "$SUFFIX"):"
refact-generate "model=$(Q hf)" mode=fim max_new_tokens=48 "prefix='$PREFIX'" "suffix='$SUFFIX'"

step "6/7 refact-eval: held-out FIM exact match and perplexity"
refact-eval "model=$(Q hf)" "tasks=[heldout_fim,perplexity]" "data=$(Q data)" \
  "out=$(Q eval/results.json)" "limit=$EVAL_LIMIT" heldout_fim.max_new_tokens=64 device=cpu "${EVAL_THREAD_ARGS[@]}"

step "7/7 done in $((SECONDS - START)) s"
"$PYTHON" scripts/main_job_report.py summary "$WORK"
