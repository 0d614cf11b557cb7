"""PNG plots of a run's metrics.jsonl: loss, learning rate, dropout and tokens/s against the step.

`refact-train plot RUN_DIR [OUT_DIR]` or `python -m refact_train.plot RUN_DIR [OUT_DIR]`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

PLOTS = {"loss": "loss", "lr": "learning rate", "dropout": "dropout rate", "tokens_per_s": "tokens / s"}


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a refact-train run directory?")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    last: dict[int, dict] = {}
    for r in rows:  # a resumed run logs some steps twice: keep the latest record of each step
        last[int(r["step"])] = r
    return [last[s] for s in sorted(last)]


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    rows = read_metrics(run_dir)
    written = []
    for key, label in PLOTS.items():
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        if pts:  # dropout and lr change at steps: draw them as steps, not ramps
            ax.plot(*zip(*pts), drawstyle="steps-post" if key in ("dropout", "lr") else "default")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_title(f"{run_dir.name}: {label}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"{key}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.exit("usage: refact-train plot RUN_DIR [OUT_DIR]")
    for p in plot_run(argv[0], argv[1] if len(argv) > 1 else None):
        print(p)


if __name__ == "__main__":
    main()
