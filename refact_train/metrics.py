"""Training metrics: tokens/s, MFU, memory; sinks to the console (tqdm), a JSONL file and wandb."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import psutil
import torch
from tqdm import tqdm

# Dense bf16 tensor-core peak FLOP/s per GPU (vendor data sheets; sparsity excluded).
PEAK_FLOPS = {
    "A5000": 111.1e12,
    "A100": 312e12,
    "H100": 989e12,
    "H200": 989e12,
}


def detect_peak_flops(override: float | None = None) -> float | None:
    if override:
        return float(override)
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name().upper()
    return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)


def flops_per_token(n_params: int, n_layer: int, n_embd: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matmuls plus 12·layers·width·context for attention (PaLM appendix B)."""
    return 6.0 * n_params + 12.0 * n_layer * n_embd * seq_len


def memory_stats(device: torch.device) -> dict:
    out = {"rss_gb": psutil.Process().memory_info().rss / 2 ** 30}
    if device.type == "cuda":
        out["gpu_max_alloc_gb"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
        out["gpu_max_reserved_gb"] = torch.cuda.max_memory_reserved(device) / 2 ** 30
    return out


class JsonlSink:
    def __init__(self, path: Path):
        cut = path.is_file() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
        self.f = open(path, "a", buffering=1)
        if cut:  # a kill cut the last record short: this run's first record must not be glued onto it
            self.f.write("\n")

    def log(self, record: dict) -> None:
        self.f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self.f.close()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _clean(record: dict) -> dict:
    return {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class WandbSink:
    """wandb in online mode only with an API key; offline otherwise. Any wandb failure disables the sink, never the run."""

    def __init__(self, run_dir: Path, project: str, name: str, config: dict, run_id: str | None, mode: str = "auto"):
        self.run = None
        try:
            import wandb
            if mode == "auto":
                has_key = bool(os.environ.get("WANDB_API_KEY")) or Path("~/.netrc").expanduser().is_file()
                mode = os.environ.get("WANDB_MODE") or ("online" if has_key else "offline")
            self.run = wandb.init(project=project, name=name, dir=str(run_dir), config=config, id=run_id,
                                  resume="allow", mode=mode, settings=wandb.Settings(silent=True, console="off"))
        except Exception as e:  # noqa: BLE001 - metrics must never fail training
            print(f"[metrics] wandb disabled: {type(e).__name__}: {e}", file=sys.stderr)

    @property
    def run_id(self) -> str | None:
        return self.run.id if self.run else None

    def log(self, record: dict) -> None:
        if self.run is None:
            return
        try:
            self.run.log(_clean(record), step=int(record["step"]))
        except Exception as e:  # noqa: BLE001
            print(f"[metrics] wandb log failed, disabling: {e}", file=sys.stderr)
            self.run = None

    def close(self) -> None:
        if self.run is not None:
            try:
                self.run.finish()
            except Exception as e:  # noqa: BLE001
                print(f"[metrics] wandb finish failed: {e}", file=sys.stderr)


class ProgressBar:
    def __init__(self, start: int, total: int, enabled: bool):
        self.bar = tqdm(total=total, initial=start, disable=not enabled, dynamic_ncols=True, desc="train",
                        file=sys.stderr)
        self.val: str | None = None  # the latest validation loss, shown beside the training loss

    def log(self, record: dict) -> None:
        if "val_loss" in record:  # a validation record: shown with the next training record
            self.val = f"{record['val_loss']:.4f}" if isinstance(record["val_loss"], float) else "nan"
        if "loss" not in record:
            return
        self.bar.update(record["step"] - self.bar.n)
        loss = record["loss"]
        extra = {"val_loss": self.val} if self.val is not None else {}
        self.bar.set_postfix(loss=loss if isinstance(loss, str) else f"{loss:.4f}", **extra, lr=f"{record['lr']:.2e}",
                             tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)

    def close(self) -> None:
        self.bar.close()


class MetricsLogger:
    """Fans one record out to every sink; only rank 0 logs."""

    def __init__(self, sinks: list):
        self.sinks = sinks

    def log(self, record: dict) -> None:
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) and k != "loss" else v)
                  for k, v in record.items()}
        if isinstance(record.get("loss"), float) and not math.isfinite(record["loss"]):
            record["loss"] = str(record["loss"])  # JSON has no NaN: keep it visible as "nan"/"inf"
        for s in self.sinks:
            s.log(record)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


class StepMetrics:
    """Decides itself which steps are logged (every `every` steps, a skipped step, the last one) and what goes in
    the record: loss, lr, throughput since the previous record, MFU, data position, memory."""

    def __init__(self, logger: MetricsLogger, every: int, tokens_per_step: int, flops_per_token: float,
                 peak_flops: float | None, world_size: int, device: torch.device):
        self.logger, self.every, self.tokens_per_step = logger, every, tokens_per_step
        self.flops_per_token, self.peak_flops, self.world_size, self.device = (flops_per_token, peak_flops,
                                                                               world_size, device)
        self.t0, self.steps_since = time.perf_counter(), 0

    def step(self, state, *, loss: float, lr: float, dropout: float, grad_norm: float, finite: bool,
             last: bool) -> None:
        """Called once per optimizer step, after `state` counts it."""
        self.steps_since += 1
        if not (state.step % self.every == 0 or not finite or last):
            return
        tps = self.tokens_per_step * self.steps_since / (time.perf_counter() - self.t0)
        mfu = tps * self.flops_per_token / self.world_size / self.peak_flops if self.peak_flops else None
        self.logger.log({"step": state.step, "loss": loss, "lr": lr, "dropout": dropout, "grad_norm": grad_norm,
                         "tokens_per_s": tps, "mfu": mfu, "tokens_seen": state.tokens_seen,
                         "samples_seen": state.samples_seen, "skipped": not finite, "nan_steps": state.nan_steps,
                         **memory_stats(self.device)})
        self.t0, self.steps_since = time.perf_counter(), 0

    def evaluation(self, state, values: dict, seconds: float) -> None:
        """A validation record of this step (its own line in metrics.jsonl); its time is not training time."""
        self.logger.log({"step": state.step, "tokens_seen": state.tokens_seen, **values})
        self.t0 += seconds

    def close(self) -> None:
        self.logger.close()
