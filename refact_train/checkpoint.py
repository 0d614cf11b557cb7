"""Trainer checkpoints: atomic write (temporary name, then rename), integrity manifest, keep-last-K, discovery,
resume. Building a model from one is refact_train.models' job.

A checkpoint is `RUN_DIR/checkpoints/step-NNNNNNNN/` holding the backend's state (model.pt and optimizer.pt, or
DeepSpeed's own files plus model.pt), `trainer_state.json` (step, data position, dropout phase, ...),
`rng/rank-NNNNN.pt`, `config.yaml` (the resolved training config), the tokenizer, and `COMPLETE.json` written last:
the size and xxh64 of every file. A directory without a valid COMPLETE.json is incomplete or corrupt and is skipped.

With validation on, `RUN_DIR/best` (a relative link to `checkpoints/step-NNNNNNNN`) and `RUN_DIR/best.json` (step,
val_loss, checkpoint) name the checkpoint with the lowest validation loss; rotation never deletes it.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import xxhash
import yaml

try:
    from numpy._core.multiarray import _reconstruct as np_reconstruct  # numpy 2
except ImportError:
    from numpy.core.multiarray import _reconstruct as np_reconstruct  # numpy 1

from data_pipeline.atomic import atomic_path, write_json_atomic, write_text_atomic
from data_pipeline.config import config_from_dict
from data_pipeline.shards import read_manifest
from data_pipeline.tokenizer import RefactTokenizer, load_tokenizer
from refact_train.lora import LoraConfig

MARKER = "COMPLETE.json"
BEST_LINK, BEST_FILE = "best", "best.json"
STEP_RE = re.compile(r"^step-(\d{8})$")
REQUIRED = ("model.pt", "trainer_state.json", "config.yaml")  # every backend writes them
# The values a checkpoint's weights are shaped by: a resume under others cannot load them (LoRA's alpha would
# silently rescale the trained adapters). n_positions, dropout, the token ids... may change on resume.
SHAPE_KEYS = {"model": ("vocab_size", "n_embd", "n_head", "n_layer", "n_inner", "tie_word_embeddings", "ln_f_bias"),
              "lora": ("enabled", "r", "alpha", "target_modules")}


@dataclass
class TrainerState:
    step: int = 0                  # optimizer steps done
    samples_seen: int = 0          # the data position: next global sample index
    tokens_seen: int = 0
    dropout_rate: float = 0.0      # rate used by the last step
    dropout_phase: str = "off"     # early | off
    nan_steps: int = 0             # steps skipped for a NaN/inf loss
    world_size: int = 1
    global_batch: int = 0
    backend: str = "single"
    wandb_id: str | None = None
    extra: dict = field(default_factory=dict)


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def _hash_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, xxhash.xxh64).hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MARKER)


def write_marker(ckpt: Path) -> None:
    entries = {}
    for p in _files(ckpt):
        with open(p, "rb") as f:
            os.fsync(f.fileno())
        entries[str(p.relative_to(ckpt))] = {"bytes": p.stat().st_size, "xxh64": _hash_file(p)}
    write_text_atomic(ckpt / MARKER, json.dumps({"files": entries}, indent=1))


def verify(ckpt: Path, check_hashes: bool = True) -> str | None:
    """None when the checkpoint is complete and intact, else the reason it is not."""
    marker = ckpt / MARKER
    if not marker.is_file():
        return f"no {MARKER} (killed while writing?)"
    try:
        entries = {str(rel): (int(meta["bytes"]), str(meta["xxh64"]))
                   for rel, meta in json.loads(marker.read_text())["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # not JSON, or not {"files": {rel: {...}}}
        return f"{MARKER} unreadable ({type(e).__name__}: {e})"
    unlisted = [name for name in REQUIRED if name not in entries]
    if unlisted:
        return f"{MARKER} does not list {', '.join(unlisted)} (every checkpoint has them)"
    for rel, (size, digest) in entries.items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            return f"{MARKER} names {rel}, a file outside the checkpoint"
        p = ckpt / rel
        if not p.is_file():
            return f"{rel} missing"
        if p.stat().st_size != size:
            return f"{rel} has {p.stat().st_size} bytes, expected {size} (truncated)"
        if check_hashes and _hash_file(p) != digest:
            return f"{rel} content hash differs (corrupt)"
    return None


def list_checkpoints(ckpt_root: Path) -> list[tuple[int, Path]]:
    """(step, dir) of every step-* directory, newest first (complete or not)."""
    if not ckpt_root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_root.iterdir() if (m := STEP_RE.match(p.name)) and p.is_dir()]
    return sorted(found, reverse=True)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (incomplete, corrupt, or holding more than data): said in one line."""


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A step dir, a `checkpoints/` dir or a run dir -> the newest intact step dir (skipping bad ones with a message)."""
    p = Path(path)
    if (p / MARKER).is_file() or STEP_RE.match(p.name):
        reason = verify(p)
        if reason:
            raise CheckpointError(f"checkpoint {p} is not usable: {reason}")
        return p
    root = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    found = latest_valid(root)
    if found is None:
        raise FileNotFoundError(f"no intact checkpoint under {root}")
    return found


def latest_valid(ckpt_root: Path, log=print) -> Path | None:
    for step, d in list_checkpoints(ckpt_root):
        reason = verify(d)
        if reason is None:
            return d
        log(f"[checkpoint] skipping {d}: {reason}; trying an older one", file=sys.stderr)
    return None


# What numpy's RNG state pickles as, allowed by name for the weights_only load.
RNG_GLOBALS = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), np_reconstruct]


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(ckpt: Path, rank: int, fallback_seed: int) -> bool:
    """This rank's saved RNG state; False (and a seed from (seed, rank, step)) when the checkpoint has none for it."""
    f = ckpt / "rng" / f"rank-{rank:05d}.pt"
    if f.is_file():
        try:  # weights_only: a checkpoint is data; a pickle in it must not run code on resume
            with torch.serialization.safe_globals(RNG_GLOBALS):
                state = torch.load(f, weights_only=True)
        except pickle.UnpicklingError as err:
            raise CheckpointError(f"{f}: holds objects other than RNG states, so it is not loaded (a pickled object "
                             f"could run code); resume from a checkpoint this trainer wrote. {err}") from None
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        return True
    torch.manual_seed(fallback_seed)
    np.random.seed(fallback_seed % 2 ** 32)
    random.seed(fallback_seed)
    return False


def read_trainer_state(ckpt: Path) -> TrainerState:
    path = ckpt / "trainer_state.json"
    try:
        return config_from_dict(TrainerState, json.loads(path.read_text()), str(path))
    except (OSError, ValueError, TypeError) as err:  # missing, not JSON, or keys of another trainer version
        raise CheckpointError(f"{err}; resume from a checkpoint this trainer wrote") from None


def read_config(path: Path) -> dict:
    """A checkpoint's config.yaml (the resolved training config it was saved with)."""
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise CheckpointError(f"{path}: unreadable ({err})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: not a training config (a mapping of sections)")
    return cfg


def shape_differences(saved: dict, current: dict) -> list[str]:
    """`section.key=A in the checkpoint, B here` for every SHAPE_KEYS value two training configs disagree on."""
    found = []
    for section, keys in SHAPE_KEYS.items():
        a, b = saved.get(section) or {}, current.get(section) or {}
        if section == "lora":
            a, b = asdict(LoraConfig.from_dict(a)), asdict(LoraConfig.from_dict(b))
            if not (a["enabled"] or b["enabled"]):
                continue  # no adapters on either side: their settings shape nothing
            a["target_modules"], b["target_modules"] = sorted(a["target_modules"]), sorted(b["target_modules"])
        found += [f"{section}.{key}={a.get(key)} in the checkpoint, {b.get(key)} here" for key in keys
                  if a.get(key) != b.get(key)]
    return found


class Checkpointer:
    """Saves, rotates and resumes the checkpoints of one run, deciding itself when a step is due.

    Every rank calls `maybe_save` and `resume` (the backend's part is collective).
    """

    def __init__(self, run_dir: Path, backend, every: int, keep_last: int, config_yaml: str,
                 tokenizer_dir: Path | None, log=print):
        self.root = run_dir / "checkpoints"
        self.backend = backend
        self.every = every
        self.keep_last = keep_last
        self.config_yaml = config_yaml
        self.tokenizer_dir = tokenizer_dir
        self.log = log
        self.best_step: int | None = None  # never pruned
        if backend.env.is_main:  # the run holds RUN/.refact-train.lock: no other process writes here
            for stale in sorted(self.root.glob(".tmp-step-*")):  # a save cut by a kill: model-sized, never read
                shutil.rmtree(stale, ignore_errors=True)

    def maybe_save(self, state: TrainerState, last: bool, force: bool = False) -> Path | None:
        """Save every `every` steps, at the last step and when forced (a stop); the path written, else None."""
        if not (state.step % self.every == 0 or last or force):
            return None
        path = self.save(state)
        if self.backend.env.is_main:
            self.log(f"[checkpoint] {path}")
        return path

    def save(self, state: TrainerState) -> Path:
        env = self.backend.env
        final = self.root / step_dir_name(state.step)
        tmp = self.root / f".tmp-{final.name}"
        if env.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            (tmp / "rng").mkdir(parents=True)
        self.backend.barrier()
        self.backend.save_state(tmp)
        torch.save(rng_state(), tmp / "rng" / f"rank-{env.rank:05d}.pt")
        if env.is_main:
            (tmp / "trainer_state.json").write_text(json.dumps(asdict(state), indent=1))
            (tmp / "config.yaml").write_text(self.config_yaml)
            if self.tokenizer_dir is not None:
                copy_tokenizer(self.tokenizer_dir, tmp / "tokenizer")
        self.backend.barrier()
        if env.is_main:
            write_marker(tmp)
            old = self.root / f".old-{final.name}"
            if final.exists():  # re-saving a step (e.g. after a resume): the old copy goes only once the new is whole
                shutil.rmtree(old, ignore_errors=True)  # one a kill left half-deleted: os.replace would refuse it
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
            self.prune()
        self.backend.barrier()
        return final

    def prune(self) -> None:
        """Keep the newest `keep_last` intact checkpoints and the best one; broken ones older than the newest intact one
        go too."""
        if self.keep_last <= 0:
            return
        kept = 0
        for step, d in list_checkpoints(self.root):
            if kept < self.keep_last and (d / MARKER).is_file():
                kept += 1
                continue
            if kept > 0 and step != self.best_step:
                shutil.rmtree(d, ignore_errors=True)

    def mark_best(self, best: dict | None) -> None:
        """Record `best` ({"step", "val_loss"}, its checkpoint already saved) as RUN/best and RUN/best.json, then
        rotate (the previous best may go now). None (a run resumed from before any best) removes the record."""
        self.best_step = None if best is None else int(best["step"])
        if not self.backend.env.is_main:
            return
        run_dir, link = self.root.parent, self.root.parent / BEST_LINK
        if best is None:
            for p in (link, run_dir / BEST_FILE):
                if p.is_symlink() or p.is_file():
                    p.unlink()
            return
        target = Path(self.root.name) / step_dir_name(self.best_step)
        write_json_atomic(run_dir / BEST_FILE, {"step": self.best_step, "val_loss": float(best["val_loss"]),
                                                "checkpoint": str(target)})
        with atomic_path(link) as tmp:  # swapped in one rename: RUN/best always names a whole checkpoint
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
        self.prune()

    def resume(self, resume, global_batch: int, seed: int, tokenizer: RefactTokenizer | None = None,
               allow_other_tokenizer: bool = False) -> TrainerState | None:
        """Load the checkpoint `resume` names ("auto": this run's newest intact one; "never"/None: none) into the
        backend and this rank's RNG; its TrainerState, or None when there is nothing to resume. `tokenizer`: the run's,
        refused if the checkpoint was trained with another."""
        if resume in (None, "never", False):
            return None
        ckpt = latest_valid(self.root, self.log) if resume == "auto" else resolve_checkpoint_dir(resume)
        if ckpt is None:
            return None
        saved = read_trainer_state(ckpt)
        try:
            differences = shape_differences(read_config(ckpt / "config.yaml"), yaml.safe_load(self.config_yaml))
        except (ValueError, AttributeError) as err:  # a lora or model section that is no mapping of valid values
            raise CheckpointError(f"{ckpt / 'config.yaml'}: {err}") from None
        if differences:
            raise CheckpointError(f"{ckpt}: its weights do not fit this run's model: {'; '.join(differences)}. Resume "
                                  f"with the checkpoint's values, or start a new run (another run_dir, init_from="
                                  f"{ckpt} for its weights)")
        if saved.global_batch != global_batch:
            raise CheckpointError(f"{ckpt}: saved with train.global_batch={saved.global_batch}, this run has "
                                  f"{global_batch}; resume needs the same global batch")
        if tokenizer is not None:
            check_tokenizer(recorded_tokenizer(ckpt), tokenizer, str(ckpt), "allow_other_tokenizer=true",
                            allow_other_tokenizer, self.log if self.backend.env.is_main else lambda *a, **k: None)
        env = self.backend.env
        self.backend.load_state(ckpt)
        same_ranks = restore_rng(ckpt, env.rank, hash((seed, env.rank, saved.step)))
        if not same_ranks or saved.world_size != env.world_size:
            self.log(f"[resume] {saved.world_size} -> {env.world_size} processes: data order kept, RNG reseeded")
        saved.world_size, saved.backend = env.world_size, self.backend.name
        if env.is_main:
            self.log(f"[resume] from {ckpt}: step {saved.step}, sample {saved.samples_seen}")
        return saved


def copy_tokenizer(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    if src.is_file():  # tokenizer=FILE of any name: kept as tokenizer.json, the name loaders look for
        shutil.copy2(src, dst / "tokenizer.json")
        return
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


# --- which tokenizer a checkpoint was trained with ------------------------------------------------------------------
def saved_tokenizer(ckpt: Path) -> RefactTokenizer | None:
    """The tokenizer saved in checkpoint `ckpt` (tokenizer.json, or vocab.json + merges.txt), None in older ones."""
    d = ckpt / "tokenizer"
    return load_tokenizer(d) if (d / "tokenizer.json").is_file() or (d / "vocab.json").is_file() else None


def recorded_tokenizer(ckpt: Path) -> tuple[str, str] | None:
    """(sha256, the file that records it) of the tokenizer `ckpt` was trained with: its saved tokenizer, else (an older
    checkpoint saved without one) the manifest of the shards its config.yaml trained on; None if neither is there."""
    saved = saved_tokenizer(ckpt)
    if saved is not None:
        return saved.sha256, str(saved.source)
    data = read_config(ckpt / "config.yaml").get("data") or {}
    if data.get("kind", "shards") != "shards" or not data.get("path"):
        return None
    try:
        manifest = read_manifest(data["path"], check_index=False)
    except (OSError, ValueError):  # the shards moved or are gone: nothing left to check against
        return None
    return manifest.tokenizer.sha256, str(manifest.directory / "manifest.json")


def check_tokenizer(recorded: tuple[str, str] | None, given: RefactTokenizer, model: str, allow_flag: str,
                    allow: bool = False, log=print) -> None:
    """Refuse `given` for a model trained with another tokenizer (`recorded`): one of the same size loads and runs, and
    the model then reads and writes other text than it learnt. None (nothing recorded) is a warning."""
    if recorded is None:
        log(f"warning: {model} records no tokenizer it was trained with: {given.source} is used unchecked (make sure "
            f"it is that one)", file=sys.stderr)
    elif recorded[0] != given.sha256 and not allow:
        raise CheckpointError(f"{given.source} (sha256 {given.sha256[:12]}) is not the tokenizer {model} was trained "
                              f"with ({recorded[1]}, sha256 {recorded[0][:12]}): use that one, or give {allow_flag} "
                              f"if the change of tokenizer is meant")
    elif recorded[0] != given.sha256:
        log(f"warning: {given.source} is not the tokenizer {model} was trained with ({recorded[1]}); used "
            f"anyway, as {allow_flag} says", file=sys.stderr)
