"""PNG plots of a run's metrics.jsonl: one dashboard of the whole run, and the single plots.

`refact-train plot RUN_DIR [OUT_DIR]` or `python -m refact_train.plot RUN_DIR [OUT_DIR]` writes
OUT_DIR/dashboard.png (training loss raw and smoothed with the validation loss on the same axes, learning rate,
dropout with the early-dropout phase shaded, tokens/s and MFU, memory, gradient norm; with validation.fim_every also
held-out FIM and bits per byte) and OUT_DIR/{loss,lr,dropout,
tokens_per_s}.png. OUT_DIR defaults to RUN_DIR/plots.

A resumed run re-logs the steps after its checkpoint: a record of a step lower than one already read starts a new
attempt, and everything the earlier attempt logged from that step on is dropped, so the run reads as one continuous
curve (the resume points are drawn as dotted lines). A run without validation simply has no validation curve.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

SINGLE = {"loss": "loss", "lr": "learning rate", "dropout": "dropout rate", "tokens_per_s": "tokens / s"}
STEPPED = ("lr", "dropout")  # the value step s trained with holds over (s-1, s]: drawn as steps, not ramps


@dataclass
class RunMetrics:
    steps: list[dict]                                  # one merged record per step, in step order
    resumed_at: list[int] = field(default_factory=list)  # first step logged by each later attempt
    cut_lines: list[int] = field(default_factory=list)  # lines that are not JSON: cut by a kill or being written

    def series(self, key: str) -> tuple[list[int], list[float]]:
        pts = [(r["step"], float(r[key])) for r in self.steps
               if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
               and math.isfinite(r[key])]
        return ([s for s, _ in pts], [v for _, v in pts]) if pts else ([], [])


def read_run_metrics(run_dir: str | Path) -> RunMetrics:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a refact-train run directory?")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e}); is {run_dir} a refact-train run directory?") from None
    by_step: dict[int, dict] = {}
    resumed_at: list[int] = []
    cut: list[int] = []
    last = -1
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:  # a line a kill cut short (the next attempt starts on a new line), or one being written
            cut.append(n)
            continue
        step = record.get("step") if isinstance(record, dict) else None
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"{path}:{n}: not a metrics record (no integer step: {line[:80]}); is {run_dir} a "
                             f"refact-train run directory?")
        if step < last:  # a resumed attempt: it replaces what the earlier one logged from here on
            by_step = {s: r for s, r in by_step.items() if s < step}
            resumed_at.append(step)
        last = step
        by_step.setdefault(step, {}).update(record)  # the training and the validation record of a step merge
    if not by_step:
        raise ValueError(f"{path} holds no metrics record yet (the run has not logged a step)")
    return RunMetrics([by_step[s] for s in sorted(by_step)], resumed_at, cut)


def smooth(values: list[float]) -> list[float]:
    """Debiased exponential moving average; its memory grows with the run (about a tenth of it, at most 20 steps)."""
    beta = min(0.95, max(0.0, 1.0 - 10.0 / max(len(values), 1)))
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1.0 - beta) * v
        out.append(avg / (1.0 - beta ** i) if beta > 0 else v)
    return out


def _shade_dropout(ax, m: RunMetrics) -> None:
    steps, rates = m.series("dropout")
    on = [s for s, r in zip(steps, rates) if r > 0]
    if on:  # the early phase: the record of step s says the rate step s trained with, i.e. from s-1 to s
        ax.axvspan(min(on) - 1, max(on), color="tab:orange", alpha=0.12, lw=0, label="early dropout")


def _loss_panel(ax, m: RunMetrics, title: str) -> None:
    steps, loss = m.series("loss")
    if steps:
        ax.plot(steps, loss, color="tab:blue", alpha=0.3, lw=0.8, label="train (raw)")
        ax.plot(steps, smooth(loss), color="tab:blue", lw=1.6, label="train (smoothed)")
    vsteps, vloss = m.series("val_loss")
    if vsteps:
        ax.plot(vsteps, vloss, "o-", color="tab:red", ms=3.5, lw=1.2, label="validation")
        i = min(range(len(vloss)), key=vloss.__getitem__)
        ax.plot([vsteps[i]], [vloss[i]], "*", color="tab:red", ms=13, label=f"min {vloss[i]:.3f} @ {vsteps[i]}")
    for s in m.resumed_at:
        ax.axvline(s - 1, color="grey", ls=":", lw=1)
    _shade_dropout(ax, m)
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(title)
    if steps or vsteps:
        ax.legend(fontsize=7)


def _line(ax, m: RunMetrics, key: str, label: str, color: str = "tab:blue") -> bool:
    steps, values = m.series(key)
    if steps:
        ax.plot(steps, values, color=color, lw=1.2, label=label, marker="o" if key.startswith("val_") else None,
                ms=3.5, drawstyle="steps-pre" if key in STEPPED else "default")
    return bool(steps)


def _panels(fig, m: RunMetrics, name: str) -> None:
    fim = bool(m.series("val_fim_edit_similarity")[0])
    axes = fig.subplots(4 if fim else 3, 2, sharex=True).ravel()
    _loss_panel(axes[0], m, f"{name}: loss")
    _line(axes[1], m, "lr", "learning rate")
    axes[1].set_title("learning rate")
    _line(axes[2], m, "dropout", "dropout", "tab:orange")
    _shade_dropout(axes[2], m)
    axes[2].set_title("dropout (early phase shaded)")
    _line(axes[3], m, "tokens_per_s", "tokens / s")
    axes[3].set_title("throughput: tokens / s" + (" and MFU" if m.series("mfu")[0] else " (MFU: GPU only)"))
    if m.series("mfu")[0]:
        twin = axes[3].twinx()
        _line(twin, m, "mfu", "MFU", "tab:green")
        twin.set_ylabel("MFU", color="tab:green")
    drawn = [_line(axes[4], m, k, k, c) for k, c in
             (("rss_gb", "tab:purple"), ("gpu_max_alloc_gb", "tab:red"), ("gpu_max_reserved_gb", "tab:brown"))]
    axes[4].set_title("memory (GiB)")
    if any(drawn):
        axes[4].legend(fontsize=7)
    _line(axes[5], m, "grad_norm", "gradient norm", "tab:grey")
    axes[5].set_title("gradient norm (before clipping)")
    if fim:  # validation.fim_every: held-out FIM of refact-eval's heldout_fim task, and bits per byte
        _line(axes[6], m, "val_fim_edit_similarity", "edit similarity", "tab:red")
        _line(axes[6], m, "val_fim_exact_match", "exact match", "tab:green")
        axes[6].set_title("held-out FIM")
        axes[6].legend(fontsize=7)
        _line(axes[7], m, "val_bits_per_byte", "validation bits / byte", "tab:red")
        axes[7].set_title("validation bits per byte")
    for ax in axes:
        ax.grid(alpha=0.3)
    for ax in axes[-2:]:
        ax.set_xlabel("step")


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the dashboard and the single plots; their paths, the dashboard first."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "plots"
    m = read_run_metrics(run_dir)
    if m.cut_lines:
        print(f"refact-train plot: skipped line(s) {m.cut_lines[:5]} of {run_dir / 'metrics.jsonl'}: cut short (a "
              f"kill) or still being written", file=sys.stderr)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file there, or a parent that cannot hold a directory
        raise ValueError(f"cannot write the plots to {out}: {e.strerror} ({e.filename}); give a writable "
                         f"OUT_DIR") from None
    fig = plt.figure(figsize=(13, 13 if m.series("val_fim_edit_similarity")[0] else 10))
    _panels(fig, m, run_dir.name)
    fig.tight_layout()
    written = [out / "dashboard.png"]
    fig.savefig(written[0], dpi=100)
    plt.close(fig)
    for key, label in SINGLE.items():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        if key == "loss":
            _loss_panel(ax, m, f"{run_dir.name}: {label}")
        else:
            _line(ax, m, key, label)
            ax.set_ylabel(label)
            ax.set_title(f"{run_dir.name}: {label}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"{key}.png", dpi=100)
        plt.close(fig)
        written.append(out / f"{key}.png")
    return written


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or len(argv) > 2:
        sys.exit("usage: refact-train plot RUN_DIR [OUT_DIR]")
    try:
        paths = plot_run(argv[0], argv[1] if len(argv) > 1 else None)
    except (FileNotFoundError, ValueError) as e:
        print(f"refact-train plot: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a PNG that cannot be written
        print(f"refact-train plot: cannot write the plots: {e.strerror} ({e.filename}); give a writable OUT_DIR",
              file=sys.stderr)
        sys.exit(2)
    for p in paths:
        print(p)


if __name__ == "__main__":
    main()
