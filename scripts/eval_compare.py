"""Two refact-eval results side by side: `python scripts/eval_compare.py BEFORE.json AFTER.json [OUT.md]`.

Prints (and writes to OUT.md when given) one Markdown row per task and metric: before, after, change.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

# Metrics worth a row; the rest stays in the JSON files. Percent where the eval reports a fraction.
ROWS = {
    "heldout_fim": [("tasks", "FIM tasks", 1.0), ("exact_match", "exact match %", 100.0),
                    ("edit_similarity", "edit similarity %", 100.0)],
    "perplexity": [("loss", "loss (nats/token)", 1.0), ("perplexity", "perplexity", 1.0),
                   ("bits_per_byte", "bits per byte", 1.0)],
    "humaneval_infill": [("exact_match", "exact match %", 100.0)],
}


def load_tasks(path: Path) -> dict:
    if not path.is_file():
        sys.exit(f"{path} not found: did refact-eval write it?")
    return json.loads(path.read_text()).get("tasks", {})


def compare_table(before: dict, after: dict) -> str:
    lines = ["| task | metric | before | after | change |", "|---|---|---:|---:|---:|"]
    for task in [t for t in before if t in after]:
        for key, label, scale in ROWS.get(task, []):
            b, a = before[task].get(key), after[task].get(key)
            if not isinstance(b, (int, float)) or not isinstance(a, (int, float)):
                continue
            lines.append(f"| {task} | {label} | {b * scale:.4g} | {a * scale:.4g} | {(a - b) * scale:+.4g} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    table = compare_table(load_tasks(Path(argv[0])), load_tasks(Path(argv[1])))
    print(table, end="")
    if len(argv) == 3:
        Path(argv[2]).write_text(table)


if __name__ == "__main__":
    main(sys.argv[1:])
