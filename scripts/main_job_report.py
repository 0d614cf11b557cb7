"""What `bash scripts/main_job.sh` prints between its steps, read from the files the commands wrote.

    python scripts/main_job_report.py drops DATA_DIR CORPUS_DIR   # per stage: dropped documents by reason; the fate of
                                                                  # the non-English and HumanEval files of the corpus
    python scripts/main_job_report.py loss RUN_DIR                # the loss along the run (mean over windows of steps)
    python scripts/main_job_report.py validation RUN_DIR          # the validation curve, its minimum, the best checkpoint
    python scripts/main_job_report.py hf-check HF_DIR PROMPT      # transformers.AutoModelForCausalLM loads the export
    python scripts/main_job_report.py summary WORK_DIR            # where everything is, and the key numbers
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from refact_train.plot import read_run_metrics

# The numbers of each eval task worth a line in the summary (the rest is in results.json / results.md).
KEY_NUMBERS = {"heldout_fim": ["tasks", "exact_match", "edit_similarity"],
               "perplexity": ["windows", "loss", "perplexity", "bits_per_byte"]}


def load_stats(data_dir: Path) -> dict:
    path = data_dir / "stats.json"
    if not path.is_file():
        sys.exit(f"{path} not found: did refact-pipeline finish (output={data_dir})?")
    return json.loads(path.read_text())


def dropped_rows(data_dir: Path) -> list[dict]:
    import pyarrow.parquet as pq
    rows: list[dict] = []
    for part in sorted((data_dir / "dropped").glob("*.parquet")):
        rows += pq.read_table(part, columns=["path", "source", "stage", "reason"]).to_pylist()
    return rows


def print_drops(data_dir: Path, corpus_dir: Path) -> None:
    stats = load_stats(data_dir)
    print(f"pipeline: {stats['input']['documents']} documents in, {stats['output']['documents']} kept, "
          f"{stats['dropped_total']} dropped")
    for stage in stats["stages"]:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(stage["dropped"].items(), key=lambda x: -x[1]))
        print(f"  {stage['stage']:<12} {stage['docs_in']:>5} in {stage['kept']:>5} kept   {reasons or '-'}")
    corpus = json.loads((corpus_dir / "corpus.json").read_text())
    rows = dropped_rows(data_dir)
    for source, label, names in (("leaked", "HumanEval files", corpus["leaked_files"]),
                                 ("foreign", "non-English files", corpus["foreign_files"])):
        fate = {Path(r["path"]).name: f"{r['stage']}: {r['reason']}" for r in rows
                if r["source"] == source or str(r["path"]).startswith(source + "/")}
        dropped = sum(1 for n in names if n in fate)
        print(f"  {label}: {dropped} of {len(names)} dropped")
        for name in names:
            print(f"    {name}: {fate.get(name, 'KEPT (not dropped)')}")
    counts = stats.get("shards", {}).get("counts", {})
    if counts:
        print("  token shards: " + ", ".join(f"{split} {c['tokens']:,} tokens / {c['documents']} documents"
                                             for split, c in counts.items()))


def read_losses(run_dir: Path) -> list[tuple[int, float]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        sys.exit(f"{path} not found: did refact-train run (run_dir={run_dir})?")
    by_step: dict[int, float] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        if isinstance(record.get("loss"), (int, float)):
            by_step[int(record["step"])] = float(record["loss"])  # a resumed run logs some steps twice: keep the last
    return sorted(by_step.items())


def read_validation(run_dir: Path) -> list[tuple[int, float]]:
    """(step, val_loss) of the run's one continuous curve (a resumed attempt replaces the steps it logs again)."""
    steps, values = read_run_metrics(run_dir).series("val_loss")
    return list(zip(steps, values))


def print_validation(run_dir: Path) -> None:
    curve = read_validation(run_dir)
    if not curve:
        print(f"validation: none logged in {run_dir}/metrics.jsonl (validation.every=0)")
        return
    low = min(curve, key=lambda p: p[1])
    print(f"validation loss: step {curve[0][0]} {curve[0][1]:.3f} -> step {curve[-1][0]} {curve[-1][1]:.3f}; "
          f"minimum {low[1]:.3f} at step {low[0]}" + (" (the initial weights)" if low[0] == 0 else ""))
    shown = curve if len(curve) <= 15 else [curve[i * (len(curve) - 1) // 14] for i in range(15)]
    print("  step:loss  " + "  ".join(f"{s}:{v:.3f}" for s, v in shown))
    best = run_dir / "best.json"
    if best.is_file():
        b = json.loads(best.read_text())
        print(f"best checkpoint: step {b['step']} (val_loss {b['val_loss']:.4f}) {run_dir / 'best'}")


def loss_windows(losses: list[tuple[int, float]], windows: int = 5) -> list[tuple[int, int, float]]:
    """(first step, last step, mean loss) over `windows` equal slices of the run: less noisy than single steps."""
    n = len(losses)
    out = []
    for w in range(min(windows, n)):
        chunk = losses[w * n // windows:(w + 1) * n // windows] if n >= windows else [losses[w]]
        if chunk:
            out.append((chunk[0][0], chunk[-1][0], sum(v for _, v in chunk) / len(chunk)))
    return out


def print_loss(run_dir: Path) -> None:
    losses = read_losses(run_dir)
    if not losses:
        sys.exit(f"{run_dir}/metrics.jsonl holds no loss")
    print(f"loss: step {losses[0][0]} {losses[0][1]:.3f} -> step {losses[-1][0]} {losses[-1][1]:.3f}")
    for first, last, mean in loss_windows(losses):
        print(f"  steps {first:>4}-{last:<4} mean loss {mean:.3f}")


def hf_check(hf_dir: Path, prompt: str) -> None:
    """Load the export the way a user of `transformers` would, and continue a prompt greedily."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir), trust_remote_code=True)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=24, do_sample=False, eos_token_id=0, pad_token_id=0)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"transformers loaded {type(model).__name__} ({n_params / 1e6:.1f}M parameters) from {hf_dir}")
    print(f"  greedy continuation of {prompt!r}: {tokenizer.decode(out[0, ids.shape[1]:])!r}")


def print_summary(work: Path) -> None:
    data, run, hf, results = work / "data", work / "run", work / "hf", work / "eval" / "results.json"
    stats = load_stats(data)
    losses = read_losses(run)
    windows = loss_windows(losses)
    print("== main job: where everything is ==")
    for label, path in (("corpus", work / "corpus"), ("pipeline output", data), ("  stats", data / "stats.json"),
                        ("  tokenizer", data / "tokenizer"), ("  token shards", data / "shards"),
                        ("  held-out files", data / "heldout"), ("training run", run),
                        ("  metrics", run / "metrics.jsonl"), ("  checkpoints", run / "checkpoints"),
                        ("  best", run / "best"), ("  dashboard", run / "plots" / "dashboard.png"),
                        ("  plots", run / "plots"), ("HF export", hf), ("eval results", results),
                        ("  eval table", results.with_suffix(".md"))):
        print(f"  {label:<16} {path}")
    print("== key numbers ==")
    print(f"  documents: {stats['input']['documents']} in, {stats['output']['documents']} kept, "
          f"{stats['dropped_total']} dropped")
    if losses:
        print(f"  training loss: {windows[0][2]:.3f} (mean of steps {windows[0][0]}-{windows[0][1]}) -> "
              f"{windows[-1][2]:.3f} (steps {windows[-1][0]}-{windows[-1][1]}); last step {losses[-1][1]:.3f}")
    curve = read_validation(run)
    if curve:
        low = min(curve, key=lambda p: p[1])
        print(f"  validation loss: {curve[0][1]:.3f} (step {curve[0][0]}) -> {curve[-1][1]:.3f} (step {curve[-1][0]}); "
              f"minimum {low[1]:.3f} at step {low[0]}")
    if results.is_file():
        for task, value in json.loads(results.read_text()).get("tasks", {}).items():
            keys = KEY_NUMBERS.get(task) or [k for k, v in value.items() if isinstance(v, (int, float))]
            numbers = {k: value[k] for k in keys if isinstance(value.get(k), (int, float))}
            print(f"  {task}: " + ", ".join(f"{k} {v:.4g}" for k, v in numbers.items()))


def main(argv: list[str]) -> None:
    commands = {"drops": (print_drops, 2), "loss": (print_loss, 1), "validation": (print_validation, 1),
                "hf-check": (hf_check, 2), "summary": (print_summary, 1)}
    if not argv or argv[0] not in commands or len(argv) - 1 != commands[argv[0]][1]:
        sys.exit(__doc__)
    fn, _ = commands[argv[0]]
    args = [Path(a) for a in argv[1:]] if argv[0] != "hf-check" else [Path(argv[1]), argv[2]]
    fn(*args)


if __name__ == "__main__":
    main(sys.argv[1:])
