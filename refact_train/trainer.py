"""The training loop: data -> micro-batches -> loss over the global batch -> backend step; checkpoints, metrics, signals."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from data_pipeline.atomic import write_text_atomic
from data_pipeline.config import config_from_dict
from data_pipeline.shards import shards_dir
from data_pipeline.tokenizer import RefactTokenizer, load_tokenizer
from refact_train.backends import make_backend
from refact_train.backends.base import dist_env
from refact_train.chat_sft import ChatSamples
from refact_train.checkpoint import Checkpointer, CheckpointError, TrainerState
from refact_train.data import DataConfig, PackedSamples, StepLoader, layout_for
from refact_train.early_dropout import EarlyDropoutConfig, dropout_at, phase
from refact_train.metrics import (
    JsonlSink, MetricsLogger, ProgressBar, StepMetrics, WandbSink, detect_peak_flops, flops_per_token,
)
from refact_train.models import export_hf, prepare_model
from refact_train.optim import OptimConfig, build_optimizer, lr_at
from refact_train.run_dir import check_run_dir, lock_run_dir
from refact_train.train_config import ConfigError, check_config
from refact_train.validation import ValidationConfig, Validator, improves


class NonFiniteLossError(RuntimeError):
    pass


def log(*args, **_):
    print(*args, file=sys.stderr, flush=True)


@contextlib.contextmanager
def caught_signals(enabled: bool, received: list[int]):
    """Inside the block SIGTERM and SIGUSR1 (a preemption) and a first SIGINT (Ctrl-C) are appended to `received`: the
    run checkpoints after its step and exits; a second SIGINT stops at once. The old handlers come back."""
    def on_signal(signum, frame):
        if signum == signal.SIGINT:
            if signal.SIGINT in received:
                raise KeyboardInterrupt
            log("[train] SIGINT: stopping after this step with a checkpoint (Ctrl-C again to stop at once, without)")
        received.append(signum)
    previous = {sig: signal.signal(sig, on_signal)
                for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)} if enabled else {}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def load_run_tokenizer(cfg: dict) -> tuple[RefactTokenizer, Path]:
    """`tokenizer=PATH` if given, else the tokenizer the shards were written with (DIR/shards/tokenizer.json)."""
    path = cfg.get("tokenizer")
    if not path and cfg["data"].get("kind", "shards") == "shards":
        path = shards_dir(cfg["data"]["path"]) / "tokenizer.json"
    if not path and cfg.get("init_from") and (Path(cfg["init_from"]) / "tokenizer.json").is_file():
        path = Path(cfg["init_from"])
    if not path:
        raise ValueError("no tokenizer: set tokenizer=PATH (a tokenizer.json or a dir holding one)")
    return load_tokenizer(path), Path(path)


def check_finite(model: torch.nn.Module, source: str) -> None:
    """Weights with a NaN or inf give a NaN loss at every step: the run skipped train.max_nan_steps steps (writing
    checkpoints of those weights) before it stopped with exit 3."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"init_from={source}: {name} holds {bad} NaN or inf value(s); training cannot start "
                                  f"from these weights, give others")


def build_samples(cfg: dict, tokenizer: RefactTokenizer):
    """The training samples of `data`: packed pre-training shards or a chat (SFT) file."""
    dcfg = cfg["data"]
    kind = dcfg.get("kind", "shards")
    if kind == "chat":
        return ChatSamples(dcfg["path"], tokenizer, int(dcfg["seq_len"]), int(cfg["seed"]))
    if kind != "shards":
        raise ValueError(f"data.kind={kind!r}: expected shards or chat (configs/data/)")
    return PackedSamples(DataConfig(path=dcfg["path"], split=dcfg.get("split", "train"), seq_len=int(dcfg["seq_len"]),
                                    seed=int(cfg["seed"]), fim=dict(dcfg.get("fim") or {})), tokenizer)


class Trainer:
    """One training run of a resolved config (a plain dict as `OmegaConf.to_container` gives)."""

    def __init__(self, cfg: dict, signals: list[int] | None = None):
        self.cfg = cfg
        # The preemption signals received; `train()` catches them from before this object is built (model load and
        # backend set-up can take minutes).
        self.signals = signals if signals is not None else []
        self.run_dir = Path(cfg["run_dir"])
        tcfg = cfg["train"]
        self.env = dist_env(tcfg.get("device", "auto"))
        self.backend = make_backend(cfg["dist"]["backend"], self.env, cfg["dist"])
        self.backend.setup()
        torch.manual_seed(int(cfg["seed"]))  # the same initial weights on every rank
        self.tokenizer, self.tokenizer_dir = load_run_tokenizer(cfg)
        self.optim_cfg = OptimConfig.from_dict(cfg["optim"])
        self.dropout_cfg = config_from_dict(EarlyDropoutConfig, cfg["early_dropout"], "early_dropout")
        self.max_steps = int(tcfg["max_steps"])
        # stop (with a checkpoint) after this step while keeping max_steps' schedule: time-limited jobs, tests
        self.stop_after = int(tcfg["stop_after"]) if tcfg.get("stop_after") else None
        if self.optim_cfg.warmup_steps > self.max_steps and self.env.is_main:  # fine for a smoke test, said
            log(f"[train] optim.warmup_steps={self.optim_cfg.warmup_steps} > train.max_steps={self.max_steps}: the "
                f"whole run is warmup, the learning rate never reaches optim.lr={self.optim_cfg.lr}")
        self.precision = self._precision(tcfg.get("precision", "auto"))

        module, self.base_model = prepare_model(cfg, self.tokenizer, log)
        if self.tokenizer is not None and self.base_model.config.vocab_size < self.tokenizer.vocab_size:
            whose = "the init_from model's" if cfg.get("init_from") else "model.vocab_size"
            raise ConfigError(f"{whose} {self.base_model.config.vocab_size} rows < the tokenizer's "
                              f"{self.tokenizer.vocab_size} tokens: set train.vocab_from_tokenizer=true or a larger "
                              f"model.vocab_size")
        if cfg.get("init_from"):
            check_finite(self.base_model, cfg["init_from"])
        self.samples = build_samples(cfg, self.tokenizer)
        self.layout = layout_for(int(tcfg["global_batch"]), int(tcfg["micro_batch"]), self.env.world_size,
                                 self.env.rank)
        self.loader = StepLoader(self.samples, self.layout)
        self.seq_len = int(cfg["data"]["seq_len"])
        self.backend.prepare(module, lambda m: build_optimizer(m, self.optim_cfg), self.layout.micro_batch,
                             self.layout.grad_accum, self.optim_cfg.clip_grad)
        self.forward = self.backend.model
        if tcfg.get("compile"):
            self.forward = torch.compile(self.backend.model)
        self.state = TrainerState(world_size=self.env.world_size, global_batch=self.layout.global_batch,
                                  backend=self.backend.name)
        self.config_yaml = OmegaConf.to_yaml(OmegaConf.create(cfg))
        self.checkpointer = Checkpointer(self.run_dir, self.backend, int(cfg["checkpoint"]["every"]),
                                         int(cfg["checkpoint"]["keep_last"]), self.config_yaml, self.tokenizer_dir, log)
        self.validator = Validator(ValidationConfig.from_dict(cfg.get("validation")), cfg, self.tokenizer,
                                   self.backend, self.layout, self.precision, log)

    def _precision(self, p: str) -> torch.dtype | None:
        """The autocast dtype (None = plain fp32): bf16 on GPU by default, fp32 on CPU unless asked."""
        if p == "auto":
            return torch.bfloat16 if self.env.device.type == "cuda" else None
        return {"bf16": torch.bfloat16, "fp32": None}[p]

    # --- resume -------------------------------------------------------------------------------------------------
    def maybe_resume(self) -> None:
        saved = self.checkpointer.resume(self.cfg.get("resume", "auto"), self.layout.global_batch,
                                         int(self.cfg["seed"]), self.tokenizer,
                                         bool(self.cfg.get("allow_other_tokenizer")))
        if saved is not None:
            self.state = saved
        self.checkpointer.mark_best(self.state.extra.get("best"))  # the resumed timeline's best, or none

    def _stop_requested(self) -> bool:
        flag = torch.tensor([1.0 if self.signals else 0.0], device=self.env.device)
        return bool(self.backend.all_reduce_sum(flag).item() > 0)

    # --- one step -------------------------------------------------------------------------------------------------
    def train_step(self, batches) -> tuple[float, float, bool]:
        dev = self.env.device
        n_tokens = torch.tensor([float(sum(int(b.loss_mask.sum()) for b in batches))], device=dev)
        n_tokens = self.backend.all_reduce_sum(n_tokens).clamp_min(1.0)
        loss_sum = torch.zeros(1, device=dev)
        finite = True
        for m, b in enumerate(batches):
            last = m == len(batches) - 1
            with self.backend.sync_context(last):
                with torch.autocast(dev.type, dtype=self.precision or torch.float32, enabled=self.precision is not None):
                    logits = self.forward(b.input_ids.to(dev))
                tok_loss = F.cross_entropy(logits.float().flatten(0, 1), b.labels.to(dev).flatten(), reduction="none")
                mb_loss = (tok_loss * b.loss_mask.to(dev).flatten()).sum()
                loss_sum += mb_loss.detach()
                if last:  # decide before the last backward: DeepSpeed steps inside it
                    total = self.backend.all_reduce_sum(loss_sum.clone())
                    finite = bool(torch.isfinite(total).all())
                    if not finite:
                        self.backend.skip_next_step()
                self.backend.backward(mb_loss / n_tokens)
        grad_norm = self.backend.step(self.optim_cfg.clip_grad)
        return float(total / n_tokens), grad_norm, finite

    # --- validation -----------------------------------------------------------------------------------------------
    def validate(self, metrics: StepMetrics, last: bool) -> bool:
        """Evaluate when the Validator says it is due; True when the validation loss is the best so far (the caller
        then makes sure this step has a checkpoint and marks it best)."""
        st = self.state
        val = self.validator.maybe_run(self.backend.model, st.step, last)
        if val is None:
            return False
        metrics.evaluation(st, val, val["val_seconds"])
        if "val_loss" not in val or not self.validator.cfg.keep_best or not improves(st.extra.get("best"), st.step,
                                                                                      val["val_loss"]):
            return False
        st.extra["best"] = {"step": st.step, "val_loss": val["val_loss"]}
        return True

    # --- the loop -------------------------------------------------------------------------------------------------
    def _sinks(self) -> MetricsLogger:
        mcfg = self.cfg["metrics"]
        if not self.env.is_main:
            return MetricsLogger([])  # only rank 0 logs
        sinks = [JsonlSink(self.run_dir / "metrics.jsonl"),
                 ProgressBar(self.state.step, self.max_steps, bool(mcfg.get("progress", True)))]
        if mcfg.get("wandb", True):
            w = WandbSink(self.run_dir, mcfg.get("wandb_project", "refact-train"), self.run_dir.name, self.cfg,
                          self.state.wandb_id, mcfg.get("wandb_mode", "auto"))
            self.state.wandb_id = w.run_id
            sinks.append(w)
        return MetricsLogger(sinks)

    def run(self) -> TrainerState:
        if self.env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / "config.yaml", self.config_yaml)
        self.backend.barrier()
        self.maybe_resume()
        max_nan = int(self.cfg["train"].get("max_nan_steps", 5))
        model_cfg = self.base_model.config
        fpt = flops_per_token(self.base_model.num_parameters(), model_cfg.n_layer, model_cfg.n_embd, self.seq_len)
        tokens_per_step = self.layout.global_batch * self.seq_len
        metrics = StepMetrics(self._sinks(), int(self.cfg["train"].get("log_every", 1)), tokens_per_step, fpt,
                              detect_peak_flops(self.cfg["metrics"].get("peak_flops")), self.env.world_size,
                              self.env.device)
        pool = ThreadPoolExecutor(max_workers=1)  # the next step's batches load while this step computes
        nxt = pool.submit(self.loader.step_batches, self.state.samples_seen)
        self.backend.model.train()
        stack = contextlib.ExitStack()
        stack.enter_context(caught_signals(self.cfg["checkpoint"].get("on_signal", True), self.signals))
        try:
            if self.state.step == 0:
                self.validate(metrics, last=False)  # the initial weights (validation.at_start)
            while self.state.step < self.max_steps:
                st = self.state
                lr = lr_at(st.step, self.max_steps, self.optim_cfg)
                self.backend.set_lr(lr)
                rate = dropout_at(st.step, st.tokens_seen, self.dropout_cfg)
                self.base_model.set_dropout(rate)
                batches = nxt.result()
                nxt = pool.submit(self.loader.step_batches, st.samples_seen + self.layout.global_batch)
                loss, grad_norm, finite = self.train_step(batches)
                st.step += 1
                st.samples_seen += self.layout.global_batch
                st.tokens_seen += tokens_per_step
                st.dropout_rate, st.dropout_phase = rate, phase(rate)
                if not finite:
                    st.nan_steps += 1
                    log(f"[train] step {st.step}: loss {loss} is not finite, step skipped "
                        f"({st.nan_steps}/{max_nan} allowed)")
                metrics.step(st, loss=loss, lr=lr, dropout=rate, grad_norm=grad_norm, finite=finite,
                             last=st.step == self.max_steps)
                if st.nan_steps > max_nan:
                    raise NonFiniteLossError(
                        f"{st.nan_steps} steps with a NaN/inf loss (train.max_nan_steps={max_nan}): stopping; the last "
                        f"good checkpoint in {self.run_dir / 'checkpoints'} is untouched")
                signalled = self._stop_requested()  # the same answer on every rank
                stop = signalled or st.step == self.stop_after
                # a preempted job has seconds to checkpoint: no validation then (the resumed run goes on after it)
                best = not signalled and self.validate(metrics, last=st.step == self.max_steps)
                if self.checkpointer.maybe_save(st, last=st.step == self.max_steps, force=stop or best) is not None:
                    self._maybe_export(st.step, final=st.step == self.max_steps)
                if best:
                    self.checkpointer.mark_best(st.extra["best"])
                if stop:
                    why = f"signal {self.signals[-1]}" if self.signals else "train.stop_after"
                    log(f"[train] {why}: checkpoint written at step {st.step}, exiting")
                    break
        finally:
            stack.close()
            pool.shutdown(wait=True, cancel_futures=True)
            metrics.close()
        return self.state

    def _maybe_export(self, step: int, final: bool) -> None:
        ecfg = self.cfg.get("export", {}) or {}
        every = int(ecfg.get("every", 0) or 0)
        if not ((final and ecfg.get("final")) or (every and step % every == 0)):
            return
        sd = self.backend.full_model_state_dict()
        if self.env.is_main:
            out = self.run_dir / "hf" / ("final" if final else f"step-{step:08d}")
            export_hf(sd, self.cfg, self.tokenizer, out)
        self.backend.barrier()

    def close(self, clean: bool = True) -> None:
        self.forward = None  # may be the DDP wrapper, which the backend drops before the process group
        self.backend.close(clean)


def claim_run_dir(cfg: dict):
    """Rank 0 checks run_dir and locks it (the lock file to close at the end, or None)."""
    if int(os.environ.get("RANK", 0)) != 0:
        return None
    run_dir = Path(cfg["run_dir"])
    check_run_dir(run_dir, cfg["data"].get("path"))
    return lock_run_dir(run_dir, log)


def train(cfg: dict) -> TrainerState:
    check_config(cfg)
    lock = claim_run_dir(cfg)
    try:
        return _train(cfg)
    finally:
        if lock is not None:
            lock.close()


def _train(cfg: dict) -> TrainerState:
    threads = torch.get_num_threads()
    if cfg["train"].get("cpu_threads"):
        # On a busy CPU, OpenMP threads that spin against other processes can be 10x slower than one thread.
        torch.set_num_threads(int(cfg["train"]["cpu_threads"]))
    # A preemption signal can come while the model and backend are still being set up: record it from the start,
    # so the first step checkpoints and exits instead of the signal being lost (and the job never requeued).
    signals: list[int] = []
    try:
        with caught_signals(cfg["checkpoint"].get("on_signal", True), signals):
            trainer = Trainer(cfg, signals)
            try:
                state = trainer.run()
            except BaseException:
                trainer.close(clean=False)
                raise
            trainer.close()
            return state
    finally:
        torch.set_num_threads(threads)
